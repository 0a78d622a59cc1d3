// libFuzzer target for device snapshot state (snapshot/device_codec.h) as restore meets it: bytes
// from a state file decoded, then handed to a fresh device. The first input byte picks:
//  - 0: the rest is a serial state message; decoded, then restored into a fresh Serial.
//  - 1: the rest is a virtio-mmio slot message (transport, device kind, spec and state);
//    decoded, validated, then its transport restored into a fresh transport and fake device
//    over a small guest memory (filled with the input, repeated), and kicked, so a restored
//    queue's rings get walked.
//  - 2, 3: the same, but the State is built field by field from the rest of the input and
//    encoded first: random bytes rarely make a valid message, and this way the restore checks
//    see states that are almost right.
// A virtio-net state (the MAC its guest read) is also restored into a real VirtioNet (over a
// back-end that has no frames), as a restoring VMM does before the transport.
// Decoding or restoring may refuse with wisp::Error; nothing may crash or trip a sanitizer.
// Whatever decodes must survive an encode/decode round trip unchanged.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "base/error.h"
#include "base/log.h"
#include "snapshot/device_codec.h"
#include "vmm/devices/serial.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/mmio_transport.h"
#include "vmm/virtio/net/net.h"
#include "vmm/virtio/virtio_spec.h"

namespace {

using namespace wisp;  // NOLINT: a fuzz target

constexpr uint64_t kMemBytes = 64 * 1024;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct NullIrq : IrqLine {
  void trigger() override {}
};

// Two queues (8 and 4 descriptors) returning every chain with its writable length; accepts any
// device state, so restores get as far as the transport's checks allow.
class FakeDevice final : public VirtioDeviceBase {
 public:
  const char* name() const override { return "fake"; }
  uint32_t device_type() const override { return 42; }
  uint64_t device_features() const override { return 1ull << 3; }
  uint16_t num_queues() const override { return 2; }
  uint16_t queue_max_size(uint16_t i) const override { return i == 0 ? 8 : 4; }
  void read_config(uint64_t, std::span<uint8_t> data) override {
    std::memset(data.data(), 0, data.size());
  }
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  VirtioDeviceState save_state() const override { return RngState{}; }
  void restore_state(const VirtioDeviceState&) override {}

 protected:
  void process_queue(uint16_t index) override {
    drain_queue(index, [](const DescriptorChain& c) {
      return static_cast<uint32_t>(std::min<uint64_t>(c.writable_bytes(), UINT32_MAX));
    });
  }
};

// A NIC with nothing on the wire: restore_state is what is exercised.
class SilentBackend final : public NetBackend {
 public:
  int poll_fd() const override { return -1; }
  ssize_t send(std::span<const iovec>) override { return -EIO; }
  ssize_t receive(std::span<uint8_t>) override { return -EAGAIN; }
  int set_offloads(const NetOffloads&) override { return 0; }
};

// Takes little-endian integers off the front of the input; zeros once it runs out.
class Fields {
 public:
  explicit Fields(std::span<const uint8_t> data) : data_(data) {}
  uint64_t next(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes && pos_ < data_.size(); ++i)
      v |= static_cast<uint64_t>(data_[pos_++]) << (8 * i);
    return v;
  }
  bool flag() { return next(1) & 1; }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

snapshot::Bytes made_serial(std::span<const uint8_t> data) {
  Fields f(data);
  SerialState st;
  st.ier = static_cast<uint8_t>(f.next(1));
  st.lcr = static_cast<uint8_t>(f.next(1));
  st.mcr = static_cast<uint8_t>(f.next(1));
  st.scr = static_cast<uint8_t>(f.next(1));
  st.dll = static_cast<uint8_t>(f.next(1));
  st.dlm = static_cast<uint8_t>(f.next(1));
  st.fifo_enabled = f.flag();
  st.thr_empty_pending = f.flag();
  st.rx.resize(f.next(1));
  for (auto& b : st.rx) b = static_cast<uint8_t>(f.next(1));
  return snapshot::encode_serial(st);
}

// Ring addresses inside (mostly) the small guest memory, with the alignment right most of the
// time; features, status and queue count near what a real driver leaves.
snapshot::Bytes made_virtio(std::span<const uint8_t> data) {
  Fields f(data);
  VirtioSlotState st;
  MmioTransportState& t = st.transport;
  t.status = static_cast<uint32_t>(f.next(1));
  t.driver_features = f.flag() ? f.next(8) : (virtio::kFeatureVersion1 | (f.next(1) << 28));
  t.queue_sel = static_cast<uint32_t>(f.next(1));
  t.interrupt_status = static_cast<uint32_t>(f.next(1) & 7);
  t.config_generation = static_cast<uint32_t>(f.next(1));
  t.needs_reset = f.flag();
  t.device_activated = f.flag();
  t.queues.resize(f.next(1) % 4);
  for (QueueState& q : t.queues) {
    q.size = static_cast<uint16_t>(1u << (f.next(1) % 5));
    q.ready = f.flag();
    // Aligned unless the fuzzer asks otherwise.
    uint64_t desc = f.next(2), avail = f.next(2), used = f.next(2);
    bool misalign = f.flag();
    q.desc_table = misalign ? desc : desc & ~15ull;
    q.avail_ring = misalign ? avail : avail & ~1ull;
    q.used_ring = misalign ? used : used & ~3ull;
    q.next_avail = static_cast<uint16_t>(f.next(2));
    q.next_used = static_cast<uint16_t>(f.next(2));
    q.event_idx = f.flag();
  }
  switch (f.next(1) % 4) {
    case 0: {
      BlockSpec spec;
      spec.path.resize(f.next(1) % 8);
      for (char& c : spec.path) c = static_cast<char>(f.next(1));
      spec.read_only = f.flag();
      spec.size_bytes = f.next(8);
      spec.mtime_ns = static_cast<int64_t>(f.next(8));
      st.spec = spec;
      st.device = BlockState{f.next(8), f.flag(), static_cast<uint32_t>(f.next(4))};
      break;
    }
    case 1:
      st.spec = RngSpec{};
      st.device = RngState{};
      break;
    case 2: {
      NetSpec spec;
      spec.tap_name.resize(f.next(1) % 20);
      for (char& c : spec.tap_name) c = static_cast<char>(f.next(1));
      // A plausible MAC unless the fuzzer asks otherwise (zero, multicast, over 48 bits).
      spec.mac = f.flag() ? f.next(8) : (f.next(6) & ~(1ull << 40)) | 1;
      st.spec = spec;
      st.device = NetState{f.flag() ? f.next(8) : spec.mac};
      break;
    }
    default:
      st.spec = VsockSpec{"", f.next(8)};
      st.device = VsockState{f.next(8)};
  }
  return snapshot::encode_virtio(st);
}

void fuzz_serial(std::span<const uint8_t> data) {
  SerialState st;
  try {
    st = snapshot::decode_serial(data, "fuzz");
  } catch (const Error&) {
    return;
  }
  check(snapshot::decode_serial(snapshot::encode_serial(st), "fuzz") == st);
  NullIrq irq;
  Serial uart(irq, [](std::span<const uint8_t>) {});
  try {
    uart.restore(st);
  } catch (const Error&) {
    return;
  }
  check(uart.save() == st);
  uint8_t b;
  for (uint64_t reg = 0; reg < Serial::kPortCount; ++reg) uart.read(reg, {&b, 1});
}

// `data` is the message; `ram` fills guest memory (repeated).
void fuzz_virtio_over(std::span<const uint8_t> data, std::span<const uint8_t> ram_fill) {
  VirtioSlotState st;
  try {
    st = snapshot::decode_virtio(data, "fuzz");
  } catch (const Error&) {
    return;
  }
  check(snapshot::decode_virtio(snapshot::encode_virtio(st), "fuzz") == st);
  try {
    st.validate();
  } catch (const Error&) {
    // The transport's restore below validates its part again, with its device.
  }
  GuestMemory mem = GuestMemory::create(kMemBytes);
  // Rings and buffers: the input repeated over guest RAM, so restored rings hold something.
  auto ram = mem.slice(GuestAddress(0), kMemBytes);
  for (size_t i = 0; i < ram.size() && !ram_fill.empty(); ++i)
    ram[i] = ram_fill[i % ram_fill.size()];
  if (std::holds_alternative<NetState>(st.device)) {
    VirtioNet nic(std::make_unique<SilentBackend>(), kDefaultNetMac);
    try {
      nic.restore_state(st.device);
      check(nic.save_state() == st.device);  // adopted as saved, or refused
    } catch (const Error&) {
    }
  }
  NullIrq irq;
  auto dev = std::make_shared<FakeDevice>();
  MmioTransport t(dev, mem, irq, "fuzz");
  try {
    dev->restore_state(st.device);
    t.restore(st.transport);
  } catch (const Error&) {
    return;
  }
  for (uint16_t q = 0; q < t.num_queues(); ++q) t.handle_queue_event(q);
  (void)t.save();
}

void fuzz_virtio(std::span<const uint8_t> data) { fuzz_virtio_over(data, data); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  wisp::set_log_level(wisp::LogLevel::kError);  // refused states are expected by the million
  std::span<const uint8_t> rest(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      fuzz_serial(rest);
      break;
    case 1:
      fuzz_virtio(rest);
      break;
    case 2:
      fuzz_serial(made_serial(rest));
      break;
    case 3:
      fuzz_virtio_over(made_virtio(rest), rest);
      break;
  }
  return 0;
}
