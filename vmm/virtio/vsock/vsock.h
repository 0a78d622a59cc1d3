// virtio-vsock (device id 19, spec 5.10): stream sockets between the guest and host processes,
// bridged to Unix sockets by a VsockMuxer. Three queues: RX (buffers the guest posts for us to
// fill), TX (packets from the guest), event (buffers for TRANSPORT_RESET). Config space: the
// guest's CID (le64).
//
// RX is filled whenever there is both something to send and a buffer: after TX packets (which
// cause replies), on RX kicks (new buffers) and when a Unix socket becomes readable. Each pass
// fills as many buffers as it can, up to a ring's worth, and raises at most one interrupt.
//
// Threads: queue work and backend events run on the event-loop thread under the device lock;
// send_transport_reset() may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>

#include "vmm/virtio/device.h"
#include "vmm/virtio/virtio_spec.h"
#include "vmm/virtio/vsock/vsock_muxer.h"

namespace wisp {

class VirtioVsock final : public VirtioDeviceBase {
 public:
  static constexpr uint16_t kRxQueue = 0;
  static constexpr uint16_t kTxQueue = 1;
  static constexpr uint16_t kEventQueue = 2;
  static constexpr uint16_t kQueueSize = 256;

  // Listens on config.uds_path at once. Throws Error (bad config, path in use).
  explicit VirtioVsock(const VsockSpec& config);

  const char* name() const override { return "virtio-vsock"; }
  uint32_t device_type() const override { return virtio::kDeviceIdVsock; }
  uint64_t device_features() const override { return 0; }  // STREAM only: no SEQPACKET
  uint16_t num_queues() const override { return 3; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}  // read-only

  // VsockState: only the guest's CID; connections are not saved. restore_state (before
  // activation) adopts the saved CID, whatever the configuration said, and arranges for a
  // TRANSPORT_RESET at activation: the restored guest's connections have no host ends, so it
  // must drop them; its listeners stay and the host dials again.
  //
  // Until the guest has handled that reset, host connects are held (VsockMuxer::hold_connects):
  // the guest resets every connection it has when it handles the event, one made just before
  // too. Linux handles the event, then puts its buffer back on the event queue and kicks: a
  // buffer posted after the one the reset used is the sign (reset_handled), checked on that
  // kick and on every other queue kick or back-end event.
  VirtioDeviceState save_state() const override;
  void restore_state(const VirtioDeviceState& s) override;

  // The Unix-socket back-end: one fd (the muxer's own epoll set, so connections come and go
  // without touching the event loop) whose handler runs handle_backend_event().
  std::vector<BackendFd> backend_fds() override;
  void handle_backend_event();

  // Drops every connection (their Unix sockets close) and posts TRANSPORT_RESET on the event
  // queue (when the guest has given us a buffer; else as soon as it does). For snapshots: a
  // restored guest must forget connections whose host ends no longer exist.
  void send_transport_reset();

  uint64_t guest_cid() const { return guest_cid_.load(std::memory_order_relaxed); }
  size_t connection_count();
  // VsockMuxer::kResetHoldMs, shorter for tests.
  void set_reset_hold_ms(uint64_t ms);

 protected:
  void process_queue(uint16_t index) override;
  bool on_activate() override;
  void on_reset() override;

 private:
  void process_tx();
  // RX and the event queue are bounded per call like TX (kick_budget(): every chain popped
  // counts, refused ones too); past it they requeue themselves and return.
  void process_rx();
  // Fills one good RX buffer with the muxer's next packet; false (buffer left on the ring)
  // when there was nothing to send after all.
  bool fill_rx(Queue& q, const DescriptorChain& chain);
  void deliver_event();
  // After the reset went out: releases held host connects once the guest posted a new event
  // buffer (see restore_state). Needs the device lock and an active device.
  void check_reset_handled();

  // Fixed but for restore_state; atomic because read_config reads it without the device lock.
  std::atomic<uint64_t> guest_cid_;
  VsockMuxer muxer_;  // guarded by the device lock
  const int backend_fd_;
  bool tx_throttled_ = false;     // TX left unread until the RST backlog drains
  bool event_pending_ = false;    // TRANSPORT_RESET not yet delivered
  bool reset_unhandled_ = false;  // delivered, the guest has not refilled its event queue yet
  uint16_t reset_avail_idx_ = 0;  // the event queue's avail index right after delivering it
  uint64_t reset_sent_ns_ = 0;
};

}  // namespace wisp
