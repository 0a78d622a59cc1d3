#include "vmm/virtio/mmio_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <bit>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>

#include "base/error.h"
#include "base/hex.h"
#include "base/log.h"

namespace wisp {
namespace {

using namespace virtio;       // NOLINT: status and feature bits
using namespace virtio_mmio;  // NOLINT: register offsets

// A guest can violate the protocol in a loop; log only the first few.
constexpr uint64_t kLoggedViolations = 10;

uint64_t set_low(uint64_t v, uint32_t low) { return (v & ~0xffff'ffffull) | low; }
uint64_t set_high(uint64_t v, uint32_t high) {
  return (v & 0xffff'ffffull) | (static_cast<uint64_t>(high) << 32);
}

}  // namespace

MmioTransport::MmioTransport(std::shared_ptr<VirtioDevice> device, const GuestMemory& memory,
                             IrqLine& irq, std::string label)
    : device_(std::move(device)),
      memory_(memory),
      irq_(irq),
      label_(label.empty() ? device_->name() : std::move(label)),
      device_features_(device_->device_features() | kTransportFeatures) {
  uint16_t n = device_->num_queues();
  if (n == 0 || n > kMaxQueues)
    throw Error(label_ + ": device has " + std::to_string(n) + " queues (1.." +
                std::to_string(kMaxQueues) + " supported)");
  for (uint16_t i = 0; i < n; ++i) {
    uint16_t max = device_->queue_max_size(i);
    if (max == 0 || max > Queue::kMaxSize || !std::has_single_bit(max))
      throw Error(label_ + ": queue " + std::to_string(i) + " maximum size " + std::to_string(max) +
                  " is not a power of two <= 32768");
    UniqueFd fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) throw_errno(label_ + ": eventfd for queue " + std::to_string(i));
    queue_events_.push_back(std::move(fd));
  }
  queues_.resize(n);
}

MmioTransport::~MmioTransport() {
  // The device keeps a pointer to us (its VirtioSignals) while active.
  device_->reset();
}

// ---- guest accesses -------------------------------------------------------------------------

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset >= kConfig) {
    std::lock_guard lock(mu_);
    device_->read_config(offset - kConfig, data);
    return;
  }
  // Registers are 32 bits wide and must be accessed as such (spec 4.2.2.2).
  if (data.size() != 4 || offset % 4 != 0) {
    std::memset(data.data(), 0, data.size());
    violation(false, "%zu-byte read at register offset 0x%llx", data.size(),
              static_cast<unsigned long long>(offset));
    return;
  }
  uint32_t v;
  {
    std::lock_guard lock(mu_);
    v = read_register(offset);
  }
  std::memcpy(data.data(), &v, 4);
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  if (offset >= kConfig) {
    device_->write_config(offset - kConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    violation(false, "%zu-byte write at register offset 0x%llx", data.size(),
              static_cast<unsigned long long>(offset));
    return;
  }
  uint32_t v;
  std::memcpy(&v, data.data(), 4);
  write_register(offset, v);
}

uint32_t MmioTransport::read_register(uint64_t offset) {
  bool queue_exists = queue_sel_ < queues_.size();
  switch (offset) {
    case kMagicValue:
      return kMagic;
    case kVersion:
      return kVersion2;
    case kDeviceId:
      return device_->device_type();
    case kVendorId:
      return kVendor;
    case kDeviceFeatures:
      if (device_features_sel_ > 1) return 0;
      return static_cast<uint32_t>(device_features_ >> (32 * device_features_sel_));
    case kQueueNumMax:
      // A queue that does not exist reads 0: how the driver learns the number of queues.
      return queue_exists ? device_->queue_max_size(static_cast<uint16_t>(queue_sel_)) : 0;
    case kQueueReady:
      return queue_exists && queues_[queue_sel_].ready ? 1 : 0;
    case kInterruptStatus:
      return interrupt_status_.load();
    case kStatus:
      return status_ | (needs_reset_.load() ? kStatusNeedsReset : 0);
    case kShmLenLow:
    case kShmLenHigh:
    case kShmBaseLow:
    case kShmBaseHigh:
      return 0xffff'ffff;  // all ones: no shared memory region (spec 4.2.2)
    case kQueueReset:
      return 0;  // VIRTIO_F_RING_RESET is not offered
    case kConfigGeneration:
      return config_generation_.load();
    default:
      violation(false, "read of write-only or unknown register 0x%llx",
                static_cast<unsigned long long>(offset));
      return 0;
  }
}

void MmioTransport::write_register(uint64_t offset, uint32_t v) {
  switch (offset) {
    case kDeviceFeaturesSel:
      device_features_sel_ = v;
      return;
    case kDriverFeatures:
      if (status_ & kStatusFeaturesOk) {
        violation(false, "driver features written after FEATURES_OK");
      } else if (driver_features_sel_ == 0) {
        driver_features_ = set_low(driver_features_, v);
      } else if (driver_features_sel_ == 1) {
        driver_features_ = set_high(driver_features_, v);
      } else if (v != 0) {
        violation(false, "driver accepts features in word %u, none offered", driver_features_sel_);
      }
      return;
    case kDriverFeaturesSel:
      driver_features_sel_ = v;
      return;
    case kQueueSel:
      queue_sel_ = v;  // any value: a queue that does not exist reads QueueNumMax = 0
      return;
    case kQueueNum:
    case kQueueReady:
    case kQueueDescLow:
    case kQueueDescHigh:
    case kQueueDriverLow:
    case kQueueDriverHigh:
    case kQueueDeviceLow:
    case kQueueDeviceHigh:
      write_queue_field(offset, v);
      return;
    case kQueueNotify:
      if (v < queues_.size()) {
        kick(static_cast<uint16_t>(v));
      } else {
        violation(false, "notify for queue %u, the device has %zu", v, queues_.size());
      }
      return;
    case kInterruptAck:
      interrupt_status_.fetch_and(~v);
      return;
    case kStatus:
      write_status(v);
      return;
    case kShmSel:
      return;  // no shared memory regions; the lengths read all ones whatever is selected
    default:
      violation(false, "write of 0x%x to read-only or unknown register 0x%llx", v,
                static_cast<unsigned long long>(offset));
      return;
  }
}

void MmioTransport::write_queue_field(uint64_t offset, uint32_t v) {
  if (queue_sel_ >= queues_.size()) {
    violation(false, "queue register 0x%llx written for queue %u, the device has %zu",
              static_cast<unsigned long long>(offset), queue_sel_, queues_.size());
    return;
  }
  if (status_ & kStatusDriverOk) {
    // The device owns the rings now; changing them under it is not allowed (spec 4.2.3.2).
    violation(true, "queue %u configured after DRIVER_OK", queue_sel_);
    return;
  }
  QueueState& q = queues_[queue_sel_];
  if (offset == kQueueReady) {
    set_queue_ready(q, v);
    return;
  }
  if (q.ready) {
    violation(false, "queue %u: register 0x%llx written while the queue is ready", queue_sel_,
              static_cast<unsigned long long>(offset));
    return;
  }
  switch (offset) {
    case kQueueNum:
      // Sizes above 16 bits would truncate into a plausible one; 0 is refused at QueueReady.
      q.size = v > 0xffff ? 0 : static_cast<uint16_t>(v);
      return;
    case kQueueDescLow:
      q.desc_table = set_low(q.desc_table, v);
      return;
    case kQueueDescHigh:
      q.desc_table = set_high(q.desc_table, v);
      return;
    case kQueueDriverLow:
      q.avail_ring = set_low(q.avail_ring, v);
      return;
    case kQueueDriverHigh:
      q.avail_ring = set_high(q.avail_ring, v);
      return;
    case kQueueDeviceLow:
      q.used_ring = set_low(q.used_ring, v);
      return;
    case kQueueDeviceHigh:
      q.used_ring = set_high(q.used_ring, v);
      return;
  }
}

void MmioTransport::set_queue_ready(QueueState& q, uint32_t v) {
  if (v == 0) {
    q.ready = false;  // Linux writes 0 when it deletes queues, after a reset
    return;
  }
  if (v != 1) {
    violation(false, "QueueReady written with %u", v);
    return;
  }
  QueueState candidate = q;
  candidate.ready = true;
  std::string why = Queue::validate(
      candidate, device_->queue_max_size(static_cast<uint16_t>(queue_sel_)), memory_);
  if (!why.empty()) {
    violation(true, "queue %u refused: %s", queue_sel_, why.c_str());
    return;
  }
  q.ready = true;
}

// ---- status state machine --------------------------------------------------------------------

bool MmioTransport::features_acceptable(uint64_t features) const {
  // Only what we offered, and VERSION_1: a version-2 transport has no legacy mode.
  return (features & ~device_features_) == 0 && (features & kFeatureVersion1);
}

void MmioTransport::write_status(uint32_t v) {
  if (v == 0) {
    reset();
    return;
  }
  uint32_t old = status_;
  if ((v & old) != old) {
    violation(false, "status 0x%x clears bits of 0x%x without a reset", v, old);
    return;
  }
  if (v & kStatusNeedsReset) {
    violation(false, "driver wrote the device-only NEEDS_RESET status bit");
    v &= ~kStatusNeedsReset;
  }
  uint32_t added = v & ~old;
  if ((added & kStatusFeaturesOk) && !features_acceptable(driver_features_)) {
    // Leaving FEATURES_OK clear is how the device says no; the driver reads it back.
    violation(false, "driver features 0x%llx refused (offered 0x%llx)",
              static_cast<unsigned long long>(driver_features_),
              static_cast<unsigned long long>(device_features_));
    v &= ~kStatusFeaturesOk;
    added &= ~kStatusFeaturesOk;
  }
  if ((added & kStatusDriverOk) && !(v & kStatusFeaturesOk)) {
    violation(false, "DRIVER_OK without FEATURES_OK");
    v &= ~kStatusDriverOk;
    added &= ~kStatusDriverOk;
  }
  status_ = v;
  if (added & kStatusDriverOk) activate();
}

void MmioTransport::activate() {
  if (needs_reset_.load()) {
    violation(false, "DRIVER_OK while the device needs a reset; not activated");
    return;
  }
  std::vector<Queue> live;
  bool event_idx = driver_features_ & kFeatureEventIdx;
  for (uint16_t i = 0; i < queues_.size(); ++i) {
    QueueState s = queues_[i];
    s.event_idx = event_idx;
    std::string why;
    auto q = Queue::restore(s, device_->queue_max_size(i), memory_, &why);
    if (!q) {  // validated at QueueReady already; kept as a guard
      violation(true, "queue %u refused at DRIVER_OK: %s", i, why.c_str());
      return;
    }
    live.push_back(std::move(*q));
  }
  if (!activate_device(std::move(live))) violation(true, "device refused activation");
}

bool MmioTransport::activate_device(std::vector<Queue> live) {
  bool ok = false;
  try {
    ok = device_->activate(ActivateArgs{memory_, std::move(live), driver_features_, *this});
  } catch (const std::exception& e) {
    // A host-side failure; we are on a vCPU thread and must not unwind into it.
    LOG_ERROR("%s: activation failed: %s", label_.c_str(), e.what());
  }
  if (!ok) return false;
  // Chains queued before DRIVER_OK got no kick that a device could act on: look now, on the
  // event-loop thread like every other kick.
  for (uint16_t i = 0; i < queues_.size(); ++i) kick(i);
  return true;
}

void MmioTransport::reset() {
  // Waits until the event loop is out of the device: after this the device touches no guest
  // memory, so the driver may free its rings.
  device_->reset();
  status_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  driver_features_ = 0;
  for (auto& q : queues_) q = QueueState{};
  interrupt_status_.store(0);
  needs_reset_.store(false);
}

// ---- snapshots ---------------------------------------------------------------------------------

MmioTransportState MmioTransport::save() const {
  std::lock_guard lock(mu_);
  MmioTransportState s;
  s.status = status_;
  s.device_features_sel = device_features_sel_;
  s.driver_features_sel = driver_features_sel_;
  s.driver_features = driver_features_;
  s.queue_sel = queue_sel_;
  s.interrupt_status = interrupt_status_.load();
  s.config_generation = config_generation_.load();
  s.needs_reset = needs_reset_.load();
  s.queues = queues_;
  if (auto live = device_->save_queues()) {
    s.device_activated = true;
    s.queues = std::move(*live);
  }
  return s;
}

void MmioTransportState::validate() const {
  auto fail = [](const std::string& why) { return Error("transport state: " + why); };
  constexpr uint32_t kDriverStatusBits =
      kStatusAcknowledge | kStatusDriver | kStatusDriverOk | kStatusFeaturesOk | kStatusFailed;
  if (status & ~kDriverStatusBits) throw fail("status " + hex(status) + " has unknown bits");
  if ((status & kStatusDriverOk) && !(status & kStatusFeaturesOk))
    throw fail("status " + hex(status) + " has DRIVER_OK without FEATURES_OK");
  if ((status & kStatusFeaturesOk) && !(driver_features & kFeatureVersion1))
    throw fail("FEATURES_OK with driver_features " + hex(driver_features) + " lacking VERSION_1");
  if (interrupt_status & ~(kInterruptUsedBuffer | kInterruptConfigChange))
    throw fail("interrupt_status " + hex(interrupt_status) + " has unknown bits");
  if (device_activated && !(status & kStatusDriverOk))
    throw fail("device_activated without DRIVER_OK in status");
  // DRIVER_OK with the device stopped happens only when the device refused or broke, which
  // always asks the driver for a reset.
  if ((status & kStatusDriverOk) && !device_activated && !needs_reset)
    throw fail("DRIVER_OK but the device was neither running nor waiting for a reset");
  if (queues.size() > MmioTransport::kMaxQueues)
    throw fail(std::to_string(queues.size()) + " queues (limit " +
               std::to_string(MmioTransport::kMaxQueues) + ")");
  bool event_idx = driver_features & kFeatureEventIdx;
  for (size_t i = 0; i < queues.size(); ++i) {
    if (device_activated && queues[i].event_idx != event_idx)
      throw fail("queue " + std::to_string(i) + ": event_idx disagrees with driver_features");
  }
}

void MmioTransport::check_fits(const MmioTransportState& s) const {
  auto fail = [&](const std::string& why) { return Error(label_ + ": transport state: " + why); };
  if (s.driver_features & ~device_features_)
    throw fail("driver_features " + hex(s.driver_features) + " include bits not offered (" +
               hex(device_features_) + ")");
  if (s.queues.size() != queues_.size())
    throw fail(std::to_string(s.queues.size()) + " queues, the device has " +
               std::to_string(queues_.size()));
  for (uint16_t i = 0; i < queues_.size(); ++i) {
    std::string why = Queue::validate(s.queues[i], device_->queue_max_size(i), memory_);
    if (!why.empty()) throw fail("queue " + std::to_string(i) + ": " + why);
  }
}

void MmioTransport::restore(const MmioTransportState& s) {
  std::lock_guard lock(mu_);
  if (status_ != 0 || device_->save_queues())
    throw Error(label_ + ": restore into a transport the guest has already set up");
  try {
    s.validate();
  } catch (const Error& e) {
    throw Error(label_ + ": " + e.what());
  }
  check_fits(s);
  std::vector<Queue> live;
  if (s.device_activated) {
    for (uint16_t i = 0; i < queues_.size(); ++i)
      live.push_back(*Queue::restore(s.queues[i], device_->queue_max_size(i), memory_));
  }
  status_ = s.status;
  device_features_sel_ = s.device_features_sel;
  driver_features_sel_ = s.driver_features_sel;
  driver_features_ = s.driver_features;
  queue_sel_ = s.queue_sel;
  for (uint16_t i = 0; i < queues_.size(); ++i) {
    // The transport keeps the driver's configuration only; ring positions live in the device.
    QueueState config = s.queues[i];
    config.next_avail = config.next_used = 0;
    config.event_idx = false;
    queues_[i] = config;
  }
  interrupt_status_.store(s.interrupt_status);
  config_generation_.store(s.config_generation);
  needs_reset_.store(s.needs_reset);
  if (s.device_activated && !activate_device(std::move(live))) {
    reset();
    throw Error(label_ + ": " + device_->name() + " refused activation on restore");
  }
  // The edge sent before the snapshot may not have reached the guest's handler; a spare one is
  // at worst a spurious interrupt (the handler finds nothing new).
  if (s.interrupt_status != 0) irq_.trigger();
}

// ---- notifications and interrupts ------------------------------------------------------------

void MmioTransport::kick(uint16_t index) {
  uint64_t one = 1;
  // EAGAIN only when the counter is saturated: a kick is pending anyway.
  [[maybe_unused]] ssize_t n = ::write(queue_events_[index].get(), &one, sizeof(one));
}

void MmioTransport::handle_queue_event(uint16_t index) {
  if (index >= queue_events_.size()) return;
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(queue_events_[index].get(), &count, sizeof(count));
  device_->queue_notify(index);
}

void MmioTransport::raise(uint32_t bits) {
  // Only a 0 -> 1 transition needs an edge: while a bit is set the driver has not yet run its
  // handler, which reads InterruptStatus, acknowledges and then looks at every queue. Extra
  // edges would only be spurious interrupts (Linux disables an IRQ that has too many).
  uint32_t old = interrupt_status_.fetch_or(bits);
  if ((old & bits) != bits) irq_.trigger();
}

void MmioTransport::signal_used_queue(uint16_t) { raise(kInterruptUsedBuffer); }

void MmioTransport::signal_config_change() {
  config_generation_.fetch_add(1);
  raise(kInterruptConfigChange);
}

void MmioTransport::set_needs_reset() {
  needs_reset_.store(true);
  raise(kInterruptConfigChange);  // spec 2.1.2: tell a running driver
}

void MmioTransport::violation(bool needs_reset, const char* fmt, ...) {
  uint64_t n = violations_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n <= kLoggedViolations) {
    char buf[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    LOG_WARN("%s: guest protocol violation: %s%s%s", label_.c_str(), buf,
             needs_reset ? " (device needs reset)" : "",
             n == kLoggedViolations ? " (further violations are counted, not logged)" : "");
  }
  if (needs_reset) {
    needs_reset_.store(true);
    // Called with mu_ held whenever needs_reset is true (register writes), so status_ is ours.
    if (status_ & kStatusDriverOk) raise(kInterruptConfigChange);
  }
}

}  // namespace wisp
