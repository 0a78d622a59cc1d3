// virtio-blk (device id 2, spec 5.2): the front-end that parses requests off one virtqueue and
// hands byte ranges to a BlockBackend. Reads, writes, flushes and GET_ID; read-only disks
// refuse writes with IOERR; requests past the end of the disk are refused; the status byte is
// written after the data, last, then the chain goes back to the driver.
//
// The disk I/O (reads, writes, flushes) runs on the device's BlockWorker thread, never on the
// event loop: the loop parses and checks a request, submits its I/O, and returns the chain
// when the worker's completion fd says it is done. At most a ring's worth of requests is in
// flight; past that the queue waits (notifications off) for completions. A device reset and a
// snapshot (quiesce) first wait for the requests in flight.
//
// A rate limit (BlockSpec::rate_limit, Firecracker's semantics: base/token_bucket.h) is checked
// as each request is taken off the queue: one op, and the bytes it reads or writes. A request
// that does not fit stays in the ring and the queue waits (notifications off) for the limiter's
// timer (vmm/virtio/queue_throttle.h). The buckets are not in the snapshot: a restored device
// starts with full buckets, as Firecracker's does; the limit itself is in the spec.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>

#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/block/block_worker.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/queue_throttle.h"
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

  // `clock` is for tests (a fake time for the rate limiter); throws Error (no timer).
  explicit VirtioBlock(std::unique_ptr<BlockBackend> backend, const RateLimitConfig& limit = {},
                       QueueThrottle::Clock clock = {});

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

  // The I/O thread (BlockWorker::start); the worker's completions come through backend_fds().
  void start_threads(const std::function<void()>& on_start) override;
  std::vector<BackendFd> backend_fds() override;
  void quiesce() override;

  uint64_t capacity_sectors() const { return capacity_; }
  // Host-side I/O failures reported to the guest as IOERR.
  uint64_t io_errors() const { return io_errors_.load(std::memory_order_relaxed); }
  // Whether the rate limiter holds the queue now (for tests; device lock).
  bool rate_limited();

 protected:
  void process_queue(uint16_t index) override;
  bool on_activate() override;
  void on_reset() override;

 private:
  struct Outcome {
    uint8_t status;
    uint32_t data_written;  // bytes written into the device-writable part before the status
  };
  // Lock held: checks one request and submits its I/O, or answers it at once (malformed,
  // GET_ID, unsupported).
  void start_request(const DescriptorChain& chain);
  // An error Outcome when a read or write request is malformed or out of range, else nullopt.
  std::optional<Outcome> check_transfer(const DescriptorChain& chain, uint32_t type,
                                        uint64_t sector);
  // Worker thread: the I/O itself, then the status byte; returns the used length.
  uint32_t run_io(const GuestMemory& mem, const DescriptorChain& chain, uint32_t type,
                  uint64_t sector);
  Outcome transfer(const GuestMemory& mem, const DescriptorChain& chain, uint32_t type,
                   uint64_t sector);
  Outcome get_id(const DescriptorChain& chain);
  Outcome io_error(const char* what, uint64_t sector, int err);
  // Writes the status byte (last) and returns the chain's used length.
  static uint32_t finish(const GuestMemory& mem, const DescriptorChain& chain, Outcome out);
  // Lock held, active: returns the chains the worker is done with.
  void complete_done();
  void on_completions();  // the worker's completion fd is readable (event loop)
  void on_rate_timer();   // the rate limiter's timer fired (event loop)
  // The bytes a request moves, for the rate limiter: its data (0 for flush, GET_ID, malformed).
  uint64_t request_bytes(const DescriptorChain& chain);

  std::unique_ptr<BlockBackend> backend_;
  // After backend_: destroyed (joined) first, as its jobs use the backend.
  BlockWorker worker_;
  uint32_t in_flight_ = 0;   // submitted, not yet returned to the guest (device lock)
  bool throttled_ = false;   // the queue waits for completions (device lock)
  QueueThrottle limit_;      // the rate limit (device lock)
  const uint64_t capacity_;  // in 512-byte sectors
  std::array<uint8_t, kConfigBytes> config_{};
  std::atomic<uint64_t> io_errors_{0};
};

}  // namespace wisp
