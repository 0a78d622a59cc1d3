#include "vmm/virtio/net/net.h"

#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "vmm/virtio/net/tap_backend.h"

namespace wisp {

using namespace virtio_net;  // NOLINT: the device's own numbers

std::shared_ptr<VirtioDevice> NetKind::create(const NetSpec& spec) {
  spec.validate();
  return std::make_shared<VirtioNet>(TapBackend::open(spec.tap_name), spec.mac, spec.rx_limit,
                                     spec.tx_limit);
}

VirtioNet::VirtioNet(std::unique_ptr<NetBackend> backend, uint64_t mac,
                     const RateLimitConfig& rx_limit, const RateLimitConfig& tx_limit,
                     QueueThrottle::Clock clock)
    : backend_(std::move(backend)),
      epoll_(epoll_create1(EPOLL_CLOEXEC)),
      mac_(mac),
      frame_(kMaxFrameBytes),
      rx_limit_(rx_limit, clock),
      tx_limit_(tx_limit, clock) {
  if (!epoll_) throw_errno("virtio-net: epoll_create1");
  if (backend_->poll_fd() >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, backend_->poll_fd(), &ev) != 0)
      throw_errno("virtio-net: watch the back-end");
  }
}

uint64_t VirtioNet::device_features() const {
  return kFeatureCsum | kFeatureGuestCsum | kFeatureMac | kFeatureGuestTso4 | kFeatureGuestTso6 |
         kFeatureHostTso4 | kFeatureHostTso6 | kFeatureMrgRxbuf | kFeatureStatus;
}

void VirtioNet::read_config(uint64_t offset, std::span<uint8_t> data) {
  // struct virtio_net_config: mac[6] (first octet first), then status (le16).
  uint8_t config[8];
  uint64_t m = mac();
  for (int i = 0; i < 6; ++i) config[i] = static_cast<uint8_t>(m >> (40 - 8 * i));
  config[6] = kStatusLinkUp;
  config[7] = 0;
  read_config_bytes(config, offset, data);
}

VirtioDeviceState VirtioNet::save_state() const { return NetState{mac()}; }

// A restored NIC needs nothing beyond its MAC and the transport's queues (activated again where
// they were, each kicked once: frames the guest queued before the snapshot go out). What the
// guest's network needs after a restore, and why the device does no more:
//  - TCP connections from before the snapshot: a peer that lost them (the snapshotted VM is
//    gone, a server forgot them) answers the guest's next segment with a reset, so they end
//    rather than hang; a connection the guest only reads from waits for its keepalive (the
//    handler's business). tests/integration/net_test.py checks the reset.
//  - Announcing the guest (VIRTIO_NET_F_GUEST_ANNOUNCE, a gratuitous ARP): a clone comes back
//    with the MAC and address it had, on a TAP of the same name (tap= mode: the same TAP; the
//    namespace mode: its own namespace, whose neighbours learn it afresh), so no peer's ARP
//    cache holds a stale entry. The feature would also need the control queue, which this
//    device does not have.
void VirtioNet::restore_state(const VirtioDeviceState& s) {
  const auto& saved = expect_device_state<NetState>(s, name());
  saved.validate();
  auto lock = lock_state();
  if (is_active_locked()) throw Error("virtio-net: restore_state on a device already in use");
  mac_.store(saved.mac, std::memory_order_relaxed);
}

std::vector<BackendFd> VirtioNet::backend_fds() {
  std::vector<BackendFd> fds = {{epoll_.get(), [this] { handle_backend_event(); }}};
  if (rx_limit_.limits())
    fds.push_back({rx_limit_.timer_fd(), [this] { on_rate_timer(kRxQueue); }});
  if (tx_limit_.limits())
    fds.push_back({tx_limit_.timer_fd(), [this] { on_rate_timer(kTxQueue); }});
  return fds;
}

bool VirtioNet::rx_rate_limited() {
  auto lock = lock_state();
  return rx_limit_.blocked();
}

bool VirtioNet::tx_rate_limited() {
  auto lock = lock_state();
  return tx_limit_.blocked();
}

void VirtioNet::on_rate_timer(uint16_t index) {
  auto lock = lock_state();
  QueueThrottle& limit = index == kRxQueue ? rx_limit_ : tx_limit_;
  if (!limit.on_timer() || !is_active_locked()) return;
  apply_offloads();
  if (index == kRxQueue)
    receive_frames(kRxFramesPerWake);
  else
    transmit_frames();
}

bool VirtioNet::rx_polling() {
  auto lock = lock_state();
  return polling_;
}

bool VirtioNet::on_activate() {
  offloads_applied_ = false;
  // A restored TX ring may hold frames a limited device had left there, with notifications
  // off: look at it once, as if kicked (a lock-free eventfd write).
  if (tx_limit_.limits()) signals().requeue(kTxQueue);
  return true;
}

void VirtioNet::on_reset() {
  // A frame for the old driver is not the new one's business.
  frame_len_ = 0;
  frame_admitted_ = false;
  offloads_applied_ = false;
  rx_limit_.forget();
  tx_limit_.forget();
}

void VirtioNet::apply_offloads() {
  if (offloads_applied_) return;
  offloads_applied_ = true;
  NetOffloads o;
  o.csum = (acked_features() & kFeatureGuestCsum) != 0;
  o.tso4 = o.csum && (acked_features() & kFeatureGuestTso4) != 0;
  o.tso6 = o.csum && (acked_features() & kFeatureGuestTso6) != 0;
  // Failing leaves them off: the kernel then hands over only plain frames, which every
  // driver takes.
  if (int rc = backend_->set_offloads(o); rc < 0)
    LOG_ERROR("virtio-net: setting the back-end's offloads: %s", std::strerror(-rc));
}

void VirtioNet::set_polling(bool on) {
  if (on == polling_ || backend_->poll_fd() < 0) return;
  epoll_event ev{};
  ev.events = on ? static_cast<uint32_t>(EPOLLIN) : 0u;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, backend_->poll_fd(), &ev) != 0) {
    LOG_ERROR("virtio-net: epoll_ctl: %s", std::strerror(errno));
    return;
  }
  polling_ = on;
}

void VirtioNet::process_queue(uint16_t index) {
  apply_offloads();
  if (index == kTxQueue) {
    transmit_frames();
  } else if (index == kRxQueue) {
    // New buffers: the frame in hand first, then whatever the back-end has.
    receive_frames(kRxFramesPerWake);
  }
}

void VirtioNet::handle_backend_event() {
  auto lock = lock_state();
  if (!is_active_locked()) {
    // No driver to take frames: stop watching until one kicks its RX queue.
    set_polling(false);
    return;
  }
  apply_offloads();
  receive_frames(kRxFramesPerWake);
}

void VirtioNet::transmit_frames() {
  if (tx_limit_.blocked()) return;  // the limiter's timer comes back
  drain_queue(
      kTxQueue, [this](const DescriptorChain& chain) { return send_frame(chain); },
      [this](const DescriptorChain& chain) {
        uint64_t len = chain.readable_bytes();
        return tx_limit_.admit(len > kHeaderBytes ? len - kHeaderBytes : 0);
      });
}

uint32_t VirtioNet::send_frame(const DescriptorChain& chain) {
  if (!chain.writable().empty() || chain.readable_bytes() < kHeaderBytes ||
      chain.readable_bytes() > kMaxFrameBytes) {
    count_bad_request(
        "tx chain at head %u: %llu readable bytes (want %u..%u), %zu writable buffers",
        chain.head(), static_cast<unsigned long long>(chain.readable_bytes()), kHeaderBytes,
        kMaxFrameBytes, chain.writable().size());
    return 0;
  }
  auto views = chain.readable_views(memory(), 0, chain.readable_bytes());
  if (views.empty() || views.size() > IOV_MAX) {
    count_bad_request("tx chain at head %u: %zu buffers (at most %d)", chain.head(), views.size(),
                      IOV_MAX);
    return 0;
  }
  std::vector<iovec> iov(views.size());
  for (size_t i = 0; i < views.size(); ++i)
    iov[i] = {const_cast<uint8_t*>(views[i].data()), views[i].size()};
  // The kernel checks the header (GSO type and sizes, checksum offsets) as it builds the skb;
  // a frame it refuses is dropped, as a NIC would.
  ssize_t n = backend_->send(iov);
  if (n < 0) {
    uint64_t dropped = tx_dropped_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (dropped <= 10)
      LOG_WARN("virtio-net: TX frame dropped: %s", std::strerror(static_cast<int>(-n)));
  } else {
    tx_frames_.fetch_add(1, std::memory_order_relaxed);
  }
  return 0;  // nothing written into a TX chain
}

void VirtioNet::receive_frames(uint32_t budget) {
  Queue& q = queue(kRxQueue);
  if (!q.ready() || rx_limit_.blocked()) {
    // Nowhere to put frames until the driver sets the queue up (and kicks it), or over the
    // rate limit until its timer fires (on_rate_timer).
    set_polling(false);
    return;
  }
  bool used = false;
  uint32_t rechecks = 2;
  for (;;) {
    if (frame_len_ == 0) {
      if (budget == 0) {
        // The epoll set stays readable: the loop comes back after its other events.
        set_polling(true);
        break;
      }
      ssize_t n = backend_->receive({frame_.data(), frame_.size()});
      if (n == -EAGAIN) {
        set_polling(true);
        break;
      }
      --budget;
      if (n < 0) {
        // The TAP went away or broke: stop watching (a broken fd polls readable forever).
        LOG_ERROR("virtio-net: reading the back-end: %s; RX stops",
                  std::strerror(static_cast<int>(-n)));
        set_polling(false);
        break;
      }
      if (n < kHeaderBytes) {
        rx_dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      frame_len_ = static_cast<uint32_t>(n);
    }
    if (!frame_admitted_) {
      // Charged once, when first tried: a frame kept for want of buffers is not charged again.
      if (!rx_limit_.admit(frame_len_ - kHeaderBytes)) {
        set_polling(false);  // the frame stays in hand; the limiter's timer comes back
        break;
      }
      frame_admitted_ = true;
    }
    if (deliver_frame()) {
      used = true;
      frame_len_ = 0;
      frame_admitted_ = false;
      continue;
    }
    // Too few buffers: keep the frame, stop reading, and ask for a kick once the driver
    // publishes past what it has now (enable_notification would ask at next_avail, which a
    // driver with a few small buffers posted has passed already). A publish that raced with
    // the request is looked at here, a bounded number of times.
    std::optional<uint16_t> idx = q.available_index(memory());
    if (!idx) {
      set_polling(false);  // a broken ring: the next kick finds it so and asks for a reset
      break;
    }
    q.notify_past(memory(), *idx);
    std::optional<uint16_t> again = q.available_index(memory());
    if (again && *again != *idx && rechecks-- > 0) continue;
    set_polling(false);
    break;
  }
  if (used) notify_if_needed(kRxQueue);
}

bool VirtioNet::deliver_frame() {
  Queue& q = queue(kRxQueue);
  const bool mergeable = (acked_features() & kFeatureMrgRxbuf) != 0;
  std::vector<DescriptorChain> chains;
  uint64_t room = 0;
  uint32_t refused = 0;
  while (room < frame_len_) {
    if (!mergeable && !chains.empty()) {
      // One buffer per frame without mergeable buffers, and this one is too short: drop the
      // frame, keep the buffer for the next.
      q.undo_pop();
      rx_dropped_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    auto chain = q.pop(memory());
    if (!chain) {
      // Give back what was taken (all popped in a row: refusals happen only before the first)
      // and wait for more.
      for (size_t i = 0; i < chains.size(); ++i) q.undo_pop();
      return false;
    }
    bool bad = !chain->ok() || !chain->readable().empty() ||
               chain->writable_bytes() < (chains.empty() ? kHeaderBytes : 1);
    if (!bad) {
      room += chain->writable_bytes();
      chains.push_back(std::move(*chain));
      continue;
    }
    if (!chain->ok())
      discard_chain(kRxQueue, *chain);
    else {
      count_bad_request("rx buffer at head %u is not a device-writable buffer of >= %u bytes",
                        chain->head(), chains.empty() ? kHeaderBytes : 1);
      q.add_used(memory(), chain->head(), 0);
    }
    if (!chains.empty() || ++refused >= q.size()) {
      // A bad buffer in the middle of a frame (or a ring of them): the frame is lost and the
      // good buffers go back empty. Only a broken driver gets here.
      for (const DescriptorChain& c : chains) q.add_used(memory(), c.head(), 0);
      rx_dropped_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  uint16_t num_buffers = static_cast<uint16_t>(chains.size());
  std::memcpy(frame_.data() + kNumBuffersOffset, &num_buffers, sizeof(num_buffers));  // le16
  uint32_t offset = 0;
  for (const DescriptorChain& c : chains) {
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(c.writable_bytes(), frame_len_ - offset));
    c.write(memory(), 0, {frame_.data() + offset, n});
    q.add_used(memory(), c.head(), n);
    offset += n;
  }
  rx_frames_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace wisp
