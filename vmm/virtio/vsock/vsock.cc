#include "vmm/virtio/vsock/vsock.h"

#include <algorithm>
#include <cstring>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

namespace wisp {

std::shared_ptr<VirtioDevice> VsockKind::create(const VsockSpec& spec) {
  return std::make_shared<VirtioVsock>(spec);
}

VirtioVsock::VirtioVsock(const VsockSpec& config)
    : guest_cid_(config.guest_cid), muxer_(config), backend_fd_(muxer_.epoll_fd()) {}

std::vector<BackendFd> VirtioVsock::backend_fds() {
  return {{backend_fd_, [this] { handle_backend_event(); }}};
}

void VirtioVsock::read_config(uint64_t offset, std::span<uint8_t> data) {
  uint8_t config[8];
  uint64_t cid = guest_cid();
  std::memcpy(config, &cid, sizeof(config));  // struct virtio_vsock_config, le64
  read_config_bytes(config, offset, data);
}

size_t VirtioVsock::connection_count() {
  auto lock = lock_state();
  return muxer_.connection_count();
}

void VirtioVsock::set_reset_hold_ms(uint64_t ms) {
  auto lock = lock_state();
  muxer_.set_reset_hold_ms(ms);
}

void VirtioVsock::process_queue(uint16_t index) {
  // Any kick may come after the guest handled the reset (its own event-queue kick can be
  // suppressed or lost in a race): look first, so held connects go out with this pass.
  check_reset_handled();
  switch (index) {
    case kRxQueue:
      // New buffers: fill them, and take TX again if it waited for RX room.
      process_rx();
      if (tx_throttled_) {
        process_tx();
        process_rx();
      }
      break;
    case kTxQueue:
      process_tx();
      process_rx();  // replies, credit updates, data the packets unblocked
      break;
    case kEventQueue:
      if (event_pending_) deliver_event();
      break;
  }
}

VirtioDeviceState VirtioVsock::save_state() const { return VsockState{guest_cid()}; }

void VirtioVsock::restore_state(const VirtioDeviceState& s) {
  const auto& saved = expect_device_state<VsockState>(s, name());
  auto lock = lock_state();
  if (is_active_locked()) throw Error("virtio-vsock: restore_state on a device already in use");
  muxer_.set_guest_cid(saved.guest_cid);  // validates it
  guest_cid_.store(saved.guest_cid, std::memory_order_relaxed);
  muxer_.reset_all();
  muxer_.hold_connects();
  tx_throttled_ = false;
  event_pending_ = true;  // delivered by on_activate, or when the guest posts an event buffer
  reset_unhandled_ = false;
}

bool VirtioVsock::on_activate() {
  // A TRANSPORT_RESET requested before activation (restore) goes out at once if the guest has
  // an event buffer posted, without waiting for the activation kick.
  if (event_pending_) deliver_event();
  return true;
}

void VirtioVsock::on_reset() {
  // The driver is gone: so are its sockets. Unix sides close; the listener stays.
  muxer_.reset_all();
  muxer_.release_held();  // a driver starting afresh has no reset to handle
  tx_throttled_ = false;
  event_pending_ = false;
  reset_unhandled_ = false;
}

void VirtioVsock::handle_backend_event() {
  auto lock = lock_state();
  muxer_.handle_events();
  if (!is_active_locked()) return;
  check_reset_handled();
  if (tx_throttled_) process_tx();
  process_rx();
}

void VirtioVsock::process_tx() {
  Queue& q = queue(kTxQueue);
  if (!q.ready()) return;
  tx_throttled_ = false;
  uint32_t budget = kick_budget(q);
  do {
    q.disable_notification(memory());
    while (true) {
      if (budget == 0) {
        // A ring's worth served: yield the loop and come back (see drain_queue).
        signals().requeue(kTxQueue);
        notify_if_needed(kTxQueue);
        return;
      }
      if (muxer_.backlog_full()) {
        // Leave the rest on the ring, notifications off: RX progress resumes us. This bounds
        // what a guest flooding us with packets for unknown ports can queue.
        tx_throttled_ = true;
        notify_if_needed(kTxQueue);
        return;
      }
      auto chain = q.pop(memory());
      if (!chain) break;
      --budget;
      if (!chain->ok()) {
        discard_chain(kTxQueue, *chain);
        continue;
      }
      TxPacket p = parse_tx_packet(memory(), *chain, guest_cid());
      if (p.error != PacketError::kNone)
        count_bad_request("tx packet at head %u: %s (op %u, %u -> %u)", chain->head(),
                          packet_error_name(p.error), p.hdr.op, p.hdr.src_port, p.hdr.dst_port);
      if (!muxer_.on_guest_packet(p) && p.error == PacketError::kNone)
        count_bad_request("tx packet at head %u: op %u breaks the protocol on %u -> %u; reset",
                          chain->head(), p.hdr.op, p.hdr.src_port, p.hdr.dst_port);
      // The payload has been written out or copied: the buffers go back now.
      q.add_used(memory(), chain->head(), 0);
    }
  } while (q.enable_notification(memory()));
  notify_if_needed(kTxQueue);
}

void VirtioVsock::process_rx() {
  Queue& q = queue(kRxQueue);
  if (!q.ready()) return;
  // Every popped chain counts, rejected ones too: a guest refilling its ring with buffers we
  // refuse (from another vCPU, as fast as we return them) would otherwise hold the loop.
  uint32_t budget = kick_budget(q);
  bool filled = false;
  bool out_of_buffers;
  do {
    out_of_buffers = false;
    while (muxer_.has_rx()) {
      if (budget == 0) {
        signals().requeue(kRxQueue);  // a ring's worth served: come back after other events
        break;
      }
      auto chain = q.pop(memory());
      if (!chain) {
        out_of_buffers = true;
        break;
      }
      --budget;
      if (!chain->ok()) {
        discard_chain(kRxQueue, *chain);
        continue;
      }
      if (!chain->readable().empty() || chain->writable_bytes() < vsock::kHeaderBytes) {
        count_bad_request("rx buffer at head %u is not a writable buffer of >= 44 bytes",
                          chain->head());
        q.add_used(memory(), chain->head(), 0);
        filled = true;
        continue;
      }
      if (!fill_rx(q, *chain)) break;
      filled = true;
    }
    // Out of buffers with more to send: ask for a kick when the guest adds some, and look
    // again in case it did meanwhile (what that finds is popped, so it counts as well).
  } while (out_of_buffers && q.enable_notification(memory()));
  if (filled) notify_if_needed(kRxQueue);
}

bool VirtioVsock::fill_rx(Queue& q, const DescriptorChain& chain) {
  uint64_t room =
      std::min<uint64_t>(chain.writable_bytes() - vsock::kHeaderBytes, vsock::kMaxPayload);
  auto data = chain.writable_views(memory(), vsock::kHeaderBytes, room);
  VsockHeader hdr;
  if (!muxer_.next_rx(&hdr, data)) {
    q.undo_pop();  // nothing to send after all: the buffer stays the guest's
    return false;
  }
  // Payload first (already read into the buffer), header last, then the used entry.
  uint8_t raw[vsock::kHeaderBytes];
  encode_vsock_header(hdr, raw);
  chain.write(memory(), 0, raw);
  q.add_used(memory(), chain.head(), vsock::kHeaderBytes + hdr.len);
  return true;
}

void VirtioVsock::deliver_event() {
  Queue& q = queue(kEventQueue);
  if (!q.ready()) return;
  // Bounded like RX: a guest posting only too-short event buffers must not hold the loop.
  uint32_t budget = kick_budget(q);
  while (event_pending_) {
    if (budget == 0) {
      signals().requeue(kEventQueue);
      break;
    }
    auto chain = q.pop(memory());
    if (!chain) break;
    --budget;
    if (!chain->ok()) {
      discard_chain(kEventQueue, *chain);
      continue;
    }
    uint32_t id = vsock::kEventTransportReset;  // struct virtio_vsock_event, le32
    if (chain->writable_bytes() < vsock::kEventBytes) {
      count_bad_request("event buffer at head %u is shorter than 4 bytes", chain->head());
      q.add_used(memory(), chain->head(), 0);
      continue;
    }
    chain->write(memory(), 0, {reinterpret_cast<const uint8_t*>(&id), sizeof(id)});
    q.add_used(memory(), chain->head(), vsock::kEventBytes);
    event_pending_ = false;
    // Linux posts all its event buffers at once: the rest are still there, so what tells
    // that the guest handled this one is an index past today's, and the kick for it is asked
    // for explicitly (its avail_event may lag far behind).
    if (std::optional<uint16_t> idx = q.available_index(memory())) {
      reset_unhandled_ = true;
      reset_avail_idx_ = *idx;
      reset_sent_ns_ = now_ns();
      q.notify_past(memory(), *idx);
    }
  }
  notify_if_needed(kEventQueue);
  check_reset_handled();  // it may have been quick
}

void VirtioVsock::check_reset_handled() {
  if (!reset_unhandled_) return;
  Queue& q = queue(kEventQueue);
  std::optional<uint16_t> idx = q.ready() ? q.available_index(memory()) : std::nullopt;
  if (!idx || *idx == reset_avail_idx_) return;
  reset_unhandled_ = false;
  if (event_pending_) return;  // a newer reset waits for delivery: keep holding for it
  // Where a restored clone's first connect waits: the guest's handling of the event.
  LOG_INFO(
      "vsock: the guest handled the transport reset %.1f ms after it went out; %zu held "
      "host connect(s) go now",
      static_cast<double>(now_ns() - reset_sent_ns_) / 1e6, muxer_.held_count());
  muxer_.release_held();
  process_rx();  // their REQUESTs
}

void VirtioVsock::send_transport_reset() {
  auto lock = lock_state();
  muxer_.reset_all();
  muxer_.hold_connects();
  tx_throttled_ = false;
  event_pending_ = true;
  reset_unhandled_ = false;
  if (is_active_locked()) deliver_event();
}

}  // namespace wisp
