// virtio-blk (device id 2, spec 5.2): the front-end that parses requests off one virtqueue and
// hands byte ranges to a BlockBackend. Reads, writes, flushes and GET_ID; read-only disks
// refuse writes with IOERR; requests past the end of the disk are refused; the status byte is
// written after the data, last, then the chain goes back to the driver.
//
// TODO(perf): requests run synchronously on the event-loop thread; move the I/O to a worker
// (or io_uring) once the event loop has more than this device to serve.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/virtio_spec.h"

namespace wisp {

namespace virtio_blk {
// Feature bits (spec 5.2.3).
constexpr uint64_t kFeatureSegMax = 1ull << 2;
constexpr uint64_t kFeatureRo = 1ull << 5;
constexpr uint64_t kFeatureFlush = 1ull << 9;
// Request types and status values (spec 5.2.6).
constexpr uint32_t kTypeIn = 0;
constexpr uint32_t kTypeOut = 1;
constexpr uint32_t kTypeFlush = 4;
constexpr uint32_t kTypeGetId = 8;
constexpr uint8_t kStatusOk = 0;
constexpr uint8_t kStatusIoErr = 1;
constexpr uint8_t kStatusUnsupported = 2;
constexpr uint64_t kSectorSize = 512;
constexpr uint64_t kHeaderBytes = 16;  // struct virtio_blk_outhdr
}  // namespace virtio_blk

class VirtioBlock final : public VirtioDeviceBase {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Data segments per request we announce (SEG_MAX); with header and status a direct chain
  // still fits the queue, and Linux then builds requests up to 512 KiB.
  static constexpr uint32_t kSegMax = 128;
  // Bytes of config space we answer (struct virtio_blk_config up to num_queues); beyond: 0.
  static constexpr size_t kConfigBytes = 36;

  explicit VirtioBlock(std::unique_ptr<BlockBackend> backend);

  const char* name() const override { return "virtio-blk"; }
  uint32_t device_type() const override { return virtio::kDeviceIdBlock; }
  uint64_t device_features() const override;
  uint16_t num_queues() const override { return 1; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}  // nothing writable

  // BlockState; restore_state refuses a disk whose size or writability differs from the saved.
  VirtioDeviceState save_state() const override;
  void restore_state(const VirtioDeviceState& s) override;

  uint64_t capacity_sectors() const { return capacity_; }
  // Host-side I/O failures reported to the guest as IOERR.
  uint64_t io_errors() const { return io_errors_.load(std::memory_order_relaxed); }

 protected:
  void process_queue(uint16_t index) override;

 private:
  struct Outcome {
    uint8_t status;
    uint32_t data_written;  // bytes written into the device-writable part before the status
  };
  Outcome execute(uint16_t index, const DescriptorChain& chain);
  Outcome transfer(uint16_t index, const DescriptorChain& chain, uint32_t type, uint64_t sector);
  Outcome get_id(const DescriptorChain& chain);
  Outcome io_error(const char* what, uint64_t sector, int err);

  std::unique_ptr<BlockBackend> backend_;
  const uint64_t capacity_;  // in 512-byte sectors
  std::array<uint8_t, kConfigBytes> config_{};
  std::atomic<uint64_t> io_errors_{0};
};

}  // namespace wisp
