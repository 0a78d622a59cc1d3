// The virtio-mmio transport, version 2 ("modern", virtio 1.2 section 4.2.2): the register block
// a driver finds at a 4 KiB MMIO window. It knows registers and the status state machine, and
// nothing of what its device does. The guest is hostile here too: a protocol violation is
// counted, logged (the first few) and, where the device cannot go on, answered with
// DEVICE_NEEDS_RESET; it never throws.
//
// Notifications. Each queue has an eventfd. The machine registers it with KVM as an ioeventfd
// at base + 0x50 with datamatch = queue index, so a kick wakes the event loop without a vCPU
// exit to userspace; a QueueNotify write that does exit (no ioeventfd, or an odd value) is
// forwarded to the same eventfd. Either way the queue is processed on the event-loop thread,
// which calls handle_queue_event(). Interrupts leave through an IrqLine (an irqfd).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "vmm/bus/io_bus.h"
#include "vmm/devices/irq_line.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/queue.h"
#include "vmm/virtio/virtio_spec.h"

namespace wisp {

// Register offsets of the virtio-mmio window (spec 4.2.2).
namespace virtio_mmio {
constexpr uint64_t kMagicValue = 0x000;
constexpr uint64_t kVersion = 0x004;
constexpr uint64_t kDeviceId = 0x008;
constexpr uint64_t kVendorId = 0x00c;
constexpr uint64_t kDeviceFeatures = 0x010;
constexpr uint64_t kDeviceFeaturesSel = 0x014;
constexpr uint64_t kDriverFeatures = 0x020;
constexpr uint64_t kDriverFeaturesSel = 0x024;
constexpr uint64_t kQueueSel = 0x030;
constexpr uint64_t kQueueNumMax = 0x034;
constexpr uint64_t kQueueNum = 0x038;
constexpr uint64_t kQueueReady = 0x044;
constexpr uint64_t kQueueNotify = 0x050;
constexpr uint64_t kInterruptStatus = 0x060;
constexpr uint64_t kInterruptAck = 0x064;
constexpr uint64_t kStatus = 0x070;
constexpr uint64_t kQueueDescLow = 0x080;
constexpr uint64_t kQueueDescHigh = 0x084;
constexpr uint64_t kQueueDriverLow = 0x090;
constexpr uint64_t kQueueDriverHigh = 0x094;
constexpr uint64_t kQueueDeviceLow = 0x0a0;
constexpr uint64_t kQueueDeviceHigh = 0x0a4;
constexpr uint64_t kShmSel = 0x0ac;
constexpr uint64_t kShmLenLow = 0x0b0;
constexpr uint64_t kShmLenHigh = 0x0b4;
constexpr uint64_t kShmBaseLow = 0x0b8;
constexpr uint64_t kShmBaseHigh = 0x0bc;
constexpr uint64_t kQueueReset = 0x0c0;
constexpr uint64_t kConfigGeneration = 0x0fc;
constexpr uint64_t kConfig = 0x100;

constexpr uint32_t kMagic = 0x74726976;  // "virt"
constexpr uint32_t kVersion2 = 2;
constexpr uint32_t kVendor = 0x50534957;  // "WISP"
constexpr uint64_t kWindowSize = 0x1000;
}  // namespace virtio_mmio

// A transport's saved state: the driver's register view plus each queue's configuration and
// ring positions. Plain data, untrusted when read from a snapshot: validate() checks what holds
// for any device, MmioTransport::restore also checks it against its device and guest memory.
struct MmioTransportState {
  uint32_t status = 0;  // the driver's status bits (DEVICE_NEEDS_RESET is `needs_reset`)
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint64_t driver_features = 0;  // what the driver accepted
  uint32_t queue_sel = 0;
  uint32_t interrupt_status = 0;  // not yet acknowledged by the driver
  uint32_t config_generation = 0;
  bool needs_reset = false;       // the device asked the driver for a reset
  bool device_activated = false;  // the device was running (DRIVER_OK accepted)
  // One per device queue. While the device runs, the live queues (next_avail/next_used and
  // event_idx included); otherwise the driver's configuration.
  std::vector<QueueState> queues;
  bool operator==(const MmioTransportState&) const = default;

  // The register fields by name, for the snapshot codec, which codes `queues` itself.
  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("status", self.status);
    f("device_features_sel", self.device_features_sel);
    f("driver_features_sel", self.driver_features_sel);
    f("driver_features", self.driver_features);
    f("queue_sel", self.queue_sel);
    f("interrupt_status", self.interrupt_status);
    f("config_generation", self.config_generation);
    f("needs_reset", self.needs_reset);
    f("device_activated", self.device_activated);
  }

  // Throws Error("transport state: ...") for a register view no driver can leave behind (unknown
  // status or interrupt bits, DRIVER_OK without FEATURES_OK, FEATURES_OK without VERSION_1, a
  // running device without DRIVER_OK, queues disagreeing with EVENT_IDX) or more queues than
  // MmioTransport::kMaxQueues.
  void validate() const;
};

class MmioTransport final : public BusDevice, private VirtioSignals {
 public:
  // Ring features every wisp queue implements; offered on top of the device's own.
  static constexpr uint64_t kTransportFeatures =
      virtio::kFeatureVersion1 | virtio::kFeatureIndirectDesc | virtio::kFeatureEventIdx;
  // More queues than any device wisp has; a bound so a device bug cannot make thousands of fds
  // (and a saved state cannot describe thousands of queues).
  static constexpr uint16_t kMaxQueues = 64;

  // `memory` and `irq` must outlive the transport. `label` names it in logs (e.g.
  // "virtio-blk@0xd0000000"); empty means the device's name. Throws Error when the device
  // describes impossible queues or an eventfd cannot be made.
  MmioTransport(std::shared_ptr<VirtioDevice> device, const GuestMemory& memory, IrqLine& irq,
                std::string label = "");
  ~MmioTransport() override;
  MmioTransport(const MmioTransport&) = delete;
  MmioTransport& operator=(const MmioTransport&) = delete;

  // BusDevice: the guest's accesses, on vCPU threads. `offset` is within the 4 KiB window.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  uint16_t num_queues() const { return static_cast<uint16_t>(queue_events_.size()); }
  // The eventfd to register as ioeventfd (base + kQueueNotify, datamatch = index) and with the
  // event loop.
  int queue_eventfd(uint16_t index) const { return queue_events_.at(index).get(); }
  // Event-loop side of a kick: drains queue `index`'s eventfd and lets the device process it.
  void handle_queue_event(uint16_t index);

  VirtioDevice& device() { return *device_; }
  const std::string& label() const { return label_; }

  // Snapshots. save() while the vCPUs are paused, on the event-loop thread (no queue work runs
  // meanwhile). restore() on a fresh transport (nothing written by a guest yet), after the
  // device's restore_state() and before any vCPU runs: validates `s` against the device (queue
  // count and sizes, offered features) and guest memory, and throws Error naming what is wrong.
  // A device that was running is activated again with its queues where they were, as at
  // DRIVER_OK; an interrupt that was pending is raised again.
  MmioTransportState save() const;
  void restore(const MmioTransportState& s);

  // Guest misbehaviour the transport contained. Read from any thread.
  uint64_t protocol_violations() const { return violations_.load(std::memory_order_relaxed); }

 private:
  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  void write_queue_field(uint64_t offset, uint32_t value);
  void set_queue_ready(QueueState& q, uint32_t value);
  bool features_acceptable(uint64_t features) const;
  // Throws unless `s` (already validated) fits this device and guest memory.
  void check_fits(const MmioTransportState& s) const;
  bool activate_device(std::vector<Queue> queues);
  void activate();
  void reset();
  void kick(uint16_t index);
  // Counts a violation, logs the first few; `needs_reset` also sets DEVICE_NEEDS_RESET.
  void violation(bool needs_reset, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

  // VirtioSignals, for the device (any thread, lock-free).
  void signal_used_queue(uint16_t queue) override;
  void signal_config_change() override;
  void set_needs_reset() override;
  void requeue(uint16_t queue) override { kick(queue); }
  void raise(uint32_t interrupt_bits);

  const std::shared_ptr<VirtioDevice> device_;
  const GuestMemory& memory_;
  IrqLine& irq_;
  const std::string label_;
  const uint64_t device_features_;  // device's bits | kTransportFeatures
  std::vector<UniqueFd> queue_events_;

  mutable std::mutex mu_;  // guards everything below except the atomics
  uint32_t status_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  std::vector<QueueState> queues_;  // the driver's configuration, one per queue

  std::atomic<uint32_t> interrupt_status_{0};
  std::atomic<uint32_t> config_generation_{0};
  std::atomic<bool> needs_reset_{false};
  std::atomic<uint64_t> violations_{0};
};

}  // namespace wisp
