// libFuzzer target for a whole virtio-mmio device as a hostile guest sees it: register writes
// and reads in any order (status machine, feature negotiation, queue setup, config space),
// kicks, and guest RAM full of fuzzer-made rings and requests, against virtio-blk (on an
// in-memory disk, read-only or not) and virtio-rng. Nothing may crash, trip a sanitizer, or
// write outside guest RAM or the disk.
//
// Input: [device byte][op count byte][ops: 8 bytes each][guest RAM contents].
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "base/log.h"
#include "tests/fuzz/mmio_fuzz_driver.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/block/block.h"
#include "vmm/virtio/mmio_transport.h"
#include "vmm/virtio/rng/rng.h"

namespace {

using namespace wisp;        // NOLINT: a fuzz target
using namespace wisp::fuzz;  // NOLINT

constexpr uint64_t kMemBytes = 8192;

// A disk in a vector, so the fuzzer never touches the host file system.
class MemoryDisk final : public BlockBackend {
 public:
  MemoryDisk(uint64_t bytes, bool ro) : data_(bytes, 0xd5), ro_(ro) {}
  uint64_t size_bytes() const override { return data_.size(); }
  bool read_only() const override { return ro_; }
  int read_at(uint64_t off, std::span<uint8_t> out) override {
    if (off > data_.size() || out.size() > data_.size() - off) __builtin_trap();
    std::memcpy(out.data(), data_.data() + off, out.size());
    return 0;
  }
  int write_at(uint64_t off, std::span<const uint8_t> in) override {
    if (ro_ || off > data_.size() || in.size() > data_.size() - off) __builtin_trap();
    std::memcpy(data_.data() + off, in.data(), in.size());
    return 0;
  }
  int flush() override { return 0; }
  std::string id() const override { return "fuzz-disk"; }

 private:
  std::vector<uint8_t> data_;
  bool ro_;
};

// The canonical driver bring-up, with rings at fuzzer-chosen places: gets the fuzzer past the
// status machine quickly so the request parsers see traffic.
void bring_up(MmioTransport& t, const Op& op) {
  using namespace virtio_mmio;  // NOLINT
  reg_write(t, kStatus, 0);
  reg_write(t, kStatus, 3);
  reg_write(t, kDriverFeaturesSel, 1);
  reg_write(t, kDriverFeatures, 1);  // VERSION_1
  reg_write(t, kDriverFeaturesSel, 0);
  reg_write(t, kDriverFeatures, op.arg2 & 1 ? virtio::kFeatureEventIdx : 0);
  reg_write(t, kStatus, 0xb);
  reg_write(t, kQueueSel, 0);
  reg_write(t, kQueueNum, 1u << (op.arg % 9));
  reg_write(t, kQueueDescLow, (op.value & 0xff) << 4);
  reg_write(t, kQueueDriverLow, ((op.value >> 8) & 0xff) << 4);
  reg_write(t, kQueueDeviceLow, ((op.value >> 16) & 0xff) << 4);
  reg_write(t, kQueueReady, 1);
  reg_write(t, kStatus, 0xf);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory mem = [] {
    set_log_level(LogLevel::kError);  // guest errors are expected here by the million
    return GuestMemory::create(kMemBytes);
  }();
  if (size < 2) return 0;
  uint8_t which = data[0];
  data += 1;
  size -= 1;
  std::vector<Op> ops = take_ops_and_fill_ram(data, size, mem, kMemBytes);
  auto ram = mem.slice(GuestAddress(0), kMemBytes);

  std::shared_ptr<VirtioDevice> dev;
  if (which & 1)
    dev = std::make_shared<VirtioRng>();
  else
    dev = std::make_shared<VirtioBlock>(
        std::make_unique<MemoryDisk>(16 * 512 + (which >> 4), (which & 2) != 0));
  NullIrq irq;
  MmioTransport t(dev, mem, irq);

  for (const Op& op : ops) {
    switch (op.kind % 6) {
      case 0:  // a 32-bit register write anywhere in the first 512 bytes (config included)
        reg_write(t, (op.arg * 4u) & 0x1fc, op.value);
        break;
      case 1: {  // a read of any width at any offset of the window
        uint8_t buf[8];
        t.read(op.arg2 & 0xfff, {buf, size_t{1} << (op.arg & 3)});
        break;
      }
      case 2: {  // a write of any width at any offset
        uint8_t buf[8];
        std::memcpy(buf, &op.value, 4);
        std::memcpy(buf + 4, &op.value, 4);
        uint64_t len = size_t{1} << (op.arg & 3);
        uint64_t off = op.arg2 & 0xfff;
        if (off + len <= virtio_mmio::kWindowSize) t.write(off, {buf, len});
        break;
      }
      case 3:  // the event loop delivers a kick
        t.handle_queue_event(static_cast<uint16_t>(op.arg % (t.num_queues() + 1)));
        break;
      case 4:
        bring_up(t, op);
        break;
      case 5: {  // the guest rewrites part of its RAM between kicks (a racing driver)
        uint64_t off = (op.arg2 * 4u) % kMemBytes;
        std::memcpy(ram.data() + off, &op.value, std::min<uint64_t>(4, kMemBytes - off));
        break;
      }
    }
  }
  return 0;
}
