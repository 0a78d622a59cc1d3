#include "vmm/virtio/device.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "base/log.h"

namespace wisp {
namespace {

// A guest can produce bad requests as fast as we can parse them; log only the first few.
constexpr uint64_t kLoggedBadRequests = 10;

}  // namespace

bool VirtioDeviceBase::activate(ActivateArgs args) {
  std::lock_guard lock(mu_);
  if (active_ || args.queues.size() != num_queues()) return false;
  memory_ = &args.memory;
  signals_ = &args.signals;
  acked_features_ = args.acked_features;
  queues_ = std::move(args.queues);
  active_ = true;
  if (!on_activate()) {
    active_ = false;
    queues_.clear();
    return false;
  }
  return true;
}

void VirtioDeviceBase::reset() {
  std::lock_guard lock(mu_);
  if (!queues_.empty()) on_reset();
  active_ = false;
  queues_.clear();
  memory_ = nullptr;
  signals_ = nullptr;
  acked_features_ = 0;
}

bool VirtioDeviceBase::is_active() const {
  std::lock_guard lock(mu_);
  return active_;
}

std::optional<std::vector<QueueState>> VirtioDeviceBase::save_queues() const {
  std::lock_guard lock(mu_);
  if (!active_) return std::nullopt;
  std::vector<QueueState> states;
  for (const Queue& q : queues_) states.push_back(q.save());
  return states;
}

void VirtioDeviceBase::queue_notify(uint16_t index) {
  std::lock_guard lock(mu_);
  if (!active_ || index >= queues_.size() || !queues_[index].ready()) return;
  process_queue(index);
  if (queues_[index].broken()) {
    // The driver published an impossible index: nothing on this device can be trusted to make
    // progress. Stop (queues stay until reset) and ask the driver for a reset.
    count_bad_request("queue %u: available ring is broken; device needs reset", index);
    active_ = false;
    signals_->set_needs_reset();
  }
}

void VirtioDeviceBase::count_bad_request(const char* fmt, ...) {
  uint64_t n = bad_requests_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n > kLoggedBadRequests) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  LOG_WARN("%s: guest error: %s%s", name(), buf,
           n == kLoggedBadRequests ? " (further guest errors are counted, not logged)" : "");
}

void VirtioDeviceBase::discard_chain(uint16_t index, const DescriptorChain& chain) {
  count_bad_request("queue %u: refused chain at head %u: %s", index, chain.head(),
                    chain_error_name(chain.error()));
  // A head the queue cannot name (out of range) cannot be given back; add_used refuses it.
  queue(index).add_used(memory(), chain.head(), 0);
}

void VirtioDeviceBase::notify_if_needed(uint16_t index) {
  if (queue(index).needs_notification(memory())) signals().signal_used_queue(index);
}

void read_config_bytes(std::span<const uint8_t> config, uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (offset >= config.size()) return;
  size_t n = std::min<uint64_t>(data.size(), config.size() - offset);
  std::memcpy(data.data(), config.data() + offset, n);
}

}  // namespace wisp
