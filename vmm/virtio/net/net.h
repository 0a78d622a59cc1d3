// virtio-net (device id 1, spec 5.1): an Ethernet NIC whose frames go to and come from a
// NetBackend (a TAP). Queue 0 is RX (buffers the guest posts for us to fill), queue 1 TX
// (frames from the guest); no control queue, one queue pair. Config space: the MAC and the
// link status (always up). Every frame on both queues starts with a 12-byte virtio_net_hdr_v1,
// which the TAP speaks too, so frames pass through unchanged but for num_buffers.
//
// TX: a kick writes each chain (header + frame, bounded in length) to the back-end with one
// writev straight from guest memory; at most a ring's worth per kick, then the device requeues
// itself. RX: the back-end's fd sits in an epoll set of the device's own, which the event loop
// watches. Each wake-up reads up to kRxFramesPerWake frames and copies each into as many RX
// buffers as it needs (mergeable buffers; num_buffers says how many). When the guest has no
// buffers left, the frame in hand is kept, the back-end drops out of the epoll set (no busy
// loop: the TAP's queue fills and the kernel drops there) and the device asks for a kick; the
// kick that brings buffers delivers the kept frame and polls the back-end again.
//
// Rate limits (NetSpec's rx_limit and tx_limit, Firecracker's semantics: base/token_bucket.h),
// RX and TX each their own, count a frame's Ethernet bytes (not the virtio header) and one op.
// A TX frame over the limit stays in the ring (notifications off); an RX frame over it stays in
// hand with the back-end out of the epoll set. Either way the limiter's timer
// (vmm/virtio/queue_throttle.h) resumes the queue. The buckets are not in the snapshot (a
// restored NIC starts with full ones, as Firecracker's does); the limits are in the spec.
//
// Threads: queue work and back-end events run on the event-loop thread under the device lock.
// The offloads are set on the back-end from that thread too (activate() runs on a vCPU thread,
// whose seccomp filter has no TAP ioctl), before any frame is read for the new driver.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/unique_fd.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/net/net_backend.h"
#include "vmm/virtio/net/net_state.h"
#include "vmm/virtio/queue_throttle.h"
#include "vmm/virtio/virtio_spec.h"

namespace wisp {

namespace virtio_net {
// Feature bits (spec 5.1.3).
constexpr uint64_t kFeatureCsum = 1ull << 0;
constexpr uint64_t kFeatureGuestCsum = 1ull << 1;
constexpr uint64_t kFeatureMac = 1ull << 5;
constexpr uint64_t kFeatureGuestTso4 = 1ull << 7;
constexpr uint64_t kFeatureGuestTso6 = 1ull << 8;
constexpr uint64_t kFeatureHostTso4 = 1ull << 11;
constexpr uint64_t kFeatureHostTso6 = 1ull << 12;
constexpr uint64_t kFeatureMrgRxbuf = 1ull << 15;
constexpr uint64_t kFeatureStatus = 1ull << 16;
constexpr uint16_t kStatusLinkUp = 1;
// struct virtio_net_hdr_v1; num_buffers is its last field.
constexpr uint32_t kHeaderBytes = 12;
constexpr uint32_t kNumBuffersOffset = 10;
// The largest frame either way: a 64 KiB GSO packet, its Ethernet and VLAN headers, and the
// virtio header. Longer TX chains are refused; the TAP never gives more.
constexpr uint32_t kMaxFrameBytes = kHeaderBytes + 65535 + 14 + 4;
}  // namespace virtio_net

class VirtioNet final : public VirtioDeviceBase {
 public:
  static constexpr uint16_t kRxQueue = 0;
  static constexpr uint16_t kTxQueue = 1;
  static constexpr uint16_t kQueueSize = 256;
  // Frames read from the back-end per event-loop wake-up: a flood from the host side cannot
  // hold the loop (vsock and the control socket wait behind it).
  static constexpr uint32_t kRxFramesPerWake = 64;

  // Throws Error when the epoll set or a rate limiter's timer cannot be made. `clock` is for
  // tests (a fake time for the rate limiters).
  VirtioNet(std::unique_ptr<NetBackend> backend, uint64_t mac, const RateLimitConfig& rx_limit = {},
            const RateLimitConfig& tx_limit = {}, QueueThrottle::Clock clock = {});

  const char* name() const override { return "virtio-net"; }
  uint32_t device_type() const override { return virtio::kDeviceIdNet; }
  uint64_t device_features() const override;
  uint16_t num_queues() const override { return 2; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}  // the MAC is read-only

  // NetState: the MAC. restore_state (before activation) adopts the saved one.
  VirtioDeviceState save_state() const override;
  void restore_state(const VirtioDeviceState& s) override;

  // The device's epoll set (holding the back-end's fd while RX polls it), and the rate
  // limiters' timers when there are limits.
  std::vector<BackendFd> backend_fds() override;
  void handle_backend_event();

  uint64_t mac() const { return mac_.load(std::memory_order_relaxed); }
  // Frames the back-end refused (TX) or that could not be delivered whole (RX: longer than
  // the guest's buffers without mergeable buffers, or a bad chain in the middle).
  uint64_t tx_dropped() const { return tx_dropped_.load(std::memory_order_relaxed); }
  uint64_t rx_dropped() const { return rx_dropped_.load(std::memory_order_relaxed); }
  uint64_t tx_frames() const { return tx_frames_.load(std::memory_order_relaxed); }
  uint64_t rx_frames() const { return rx_frames_.load(std::memory_order_relaxed); }
  // Whether the back-end is in the epoll set (false while RX waits for buffers).
  bool rx_polling();
  // Whether a rate limiter holds RX / TX now (for tests).
  bool rx_rate_limited();
  bool tx_rate_limited();

 protected:
  void process_queue(uint16_t index) override;
  bool on_activate() override;
  void on_reset() override;

 private:
  // Sets the offloads the driver negotiated on the back-end, once per activation.
  void apply_offloads();
  // drain_queue for TX, the rate limit asked before each frame is taken.
  void transmit_frames();
  uint32_t send_frame(const DescriptorChain& chain);
  void on_rate_timer(uint16_t queue);  // a limiter's timer fired (event loop)
  // Reads and delivers frames until the budget, the back-end or the guest's buffers run out.
  void receive_frames(uint32_t budget);
  // Copies the frame in hand into RX buffers. False (frame kept, nothing popped) when the guest
  // has too few posted; true when it went out, or was dropped for a guest fault.
  bool deliver_frame();
  void set_polling(bool on);

  std::unique_ptr<NetBackend> backend_;
  UniqueFd epoll_;
  std::atomic<uint64_t> mac_;  // read_config reads it without the device lock
  bool polling_ = true;
  bool offloads_applied_ = false;
  std::vector<uint8_t> frame_;  // the frame in hand (RX), frame_len_ bytes of it valid
  uint32_t frame_len_ = 0;
  bool frame_admitted_ = false;  // the frame in hand has been charged to the RX limiter
  QueueThrottle rx_limit_, tx_limit_;
  std::atomic<uint64_t> tx_dropped_{0}, rx_dropped_{0}, tx_frames_{0}, rx_frames_{0};
};

}  // namespace wisp
