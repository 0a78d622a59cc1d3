// libFuzzer target for virtio-net as a hostile guest sees it: register accesses in any order,
// feature negotiation (mergeable buffers or not), both queues set up at fuzzer-chosen places,
// kicks, guest RAM full of fuzzer-made rings and chains, and frames arriving from the back-end
// (a stand-in for the TAP) of any length. Nothing may crash, trip a sanitizer, write outside
// guest RAM, or hand the back-end a frame outside the device's bounds.
//
// Input: [op count byte][ops: 8 bytes each][guest RAM contents].
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "base/log.h"
#include "tests/fuzz/mmio_fuzz_driver.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/mmio_transport.h"
#include "vmm/virtio/net/net.h"

namespace {

using namespace wisp;        // NOLINT: a fuzz target
using namespace wisp::fuzz;  // NOLINT

constexpr uint64_t kMemBytes = 16384;

// Frames queued by the fuzzer; sends are checked against the device's bounds.
class FuzzBackend final : public NetBackend {
 public:
  std::deque<uint32_t> inbox;  // lengths of frames waiting
  int poll_fd() const override { return -1; }
  ssize_t send(std::span<const iovec> frame) override {
    uint64_t total = 0;
    for (const iovec& v : frame) total += v.iov_len;
    if (total < virtio_net::kHeaderBytes || total > virtio_net::kMaxFrameBytes) __builtin_trap();
    return static_cast<ssize_t>(total);
  }
  ssize_t receive(std::span<uint8_t> out) override {
    if (inbox.empty()) return -EAGAIN;
    uint32_t len = std::min<uint32_t>(inbox.front(), static_cast<uint32_t>(out.size()));
    inbox.pop_front();
    std::memset(out.data(), 0x5a, len);
    return len;
  }
  int set_offloads(const NetOffloads&) override { return 0; }
};

// The driver's bring-up with both queues at fuzzer-chosen places and sizes, so the frame
// paths see traffic quickly.
void bring_up(MmioTransport& t, const Op& op) {
  using namespace virtio_mmio;  // NOLINT
  reg_write(t, kStatus, 0);
  reg_write(t, kStatus, 3);
  reg_write(t, kDriverFeaturesSel, 1);
  reg_write(t, kDriverFeatures, 1);  // VERSION_1
  reg_write(t, kDriverFeaturesSel, 0);
  uint32_t f = (op.arg2 & 1 ? static_cast<uint32_t>(virtio::kFeatureEventIdx) : 0) |
               (op.arg2 & 2 ? static_cast<uint32_t>(virtio_net::kFeatureMrgRxbuf) : 0) |
               static_cast<uint32_t>(virtio_net::kFeatureMac);
  reg_write(t, kDriverFeatures, f);
  reg_write(t, kStatus, 0xb);
  for (uint32_t q = 0; q < 2; ++q) {
    uint32_t v = q == 0 ? op.value : (op.value >> 4) | (op.value << 28);
    reg_write(t, kQueueSel, q);
    reg_write(t, kQueueNum, 1u << ((op.arg >> (4 * q)) % 9));
    reg_write(t, kQueueDescLow, (v & 0xff) << 6);
    reg_write(t, kQueueDriverLow, ((v >> 8) & 0xff) << 6);
    reg_write(t, kQueueDeviceLow, ((v >> 16) & 0xff) << 6);
    reg_write(t, kQueueReady, 1);
  }
  reg_write(t, kStatus, 0xf);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory mem = [] {
    set_log_level(LogLevel::kError);  // guest errors are expected here by the million
    return GuestMemory::create(kMemBytes);
  }();
  if (size < 1) return 0;
  std::vector<Op> ops = take_ops_and_fill_ram(data, size, mem, kMemBytes);
  auto ram = mem.slice(GuestAddress(0), kMemBytes);

  auto backend = std::make_unique<FuzzBackend>();
  FuzzBackend* b = backend.get();
  auto dev = std::make_shared<VirtioNet>(std::move(backend), 0x02'00'00'00'00'01);
  NullIrq irq;
  MmioTransport t(dev, mem, irq);

  for (const Op& op : ops) {
    switch (op.kind % 7) {
      case 0:  // a 32-bit register write anywhere in the first 512 bytes (config included)
        reg_write(t, (op.arg * 4u) & 0x1fc, op.value);
        break;
      case 1: {  // a read of any width at any offset of the window
        uint8_t buf[8];
        t.read(op.arg2 & 0xfff, {buf, size_t{1} << (op.arg & 3)});
        break;
      }
      case 2:  // the event loop delivers a kick
        t.handle_queue_event(static_cast<uint16_t>(op.arg % 3));
        break;
      case 3:
        bring_up(t, op);
        break;
      case 4: {  // the guest rewrites part of its RAM between kicks (a racing driver)
        uint64_t off = (op.arg2 * 4u) % kMemBytes;
        std::memcpy(ram.data() + off, &op.value, std::min<uint64_t>(4, kMemBytes - off));
        break;
      }
      case 5:  // frames arrive from the host side (0 to beyond the largest)
        for (int i = 0; i <= (op.arg & 7); ++i) b->inbox.push_back(op.value % 70000);
        dev->handle_backend_event();
        break;
      case 6:  // a snapshot of the device's state, and a restore attempt on the live one
        try {
          dev->restore_state(dev->save_state());
        } catch (const std::exception&) {
        }
        break;
    }
  }
  return 0;
}
