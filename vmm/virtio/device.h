// What a virtio device is to its transport (VirtioDevice), what the transport gives a device to
// reach the driver outside the rings (VirtioSignals), and a base class carrying the state every
// device has (VirtioDeviceBase). Devices never see transport registers; the transport never
// knows what a device does with its queues (DESIGN.md rule 4).
//
// Threads. The transport calls activate(), reset(), read_config() and write_config() on a vCPU
// thread (the guest's register accesses) with the transport's lock held; queue_notify() and a
// device's own back-end handlers run on the event-loop thread. VirtioDeviceBase serialises the
// two with one device mutex, so reset() returns only once the loop has stopped touching the
// rings. Lock order: transport lock, then device lock. VirtioSignals is lock-free, so a device
// may call it with its own lock held.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/device_kinds.h"
#include "vmm/virtio/queue.h"

namespace wisp {

// Implemented by the transport. Callable from any thread; never blocks.
class VirtioSignals {
 public:
  virtual ~VirtioSignals() = default;
  // Used buffers are in `queue`: sets the used-buffer interrupt bit and raises the IRQ. Call it
  // when Queue::needs_notification() says so.
  virtual void signal_used_queue(uint16_t queue) = 0;
  // The device configuration changed: bumps ConfigGeneration and raises the config interrupt.
  virtual void signal_config_change() = 0;
  // The device cannot go on without a reset (e.g. a broken ring): sets DEVICE_NEEDS_RESET in
  // the status register and tells the driver with a config-change interrupt.
  virtual void set_needs_reset() = 0;
  // Queue `queue` still has work but the device yields the event loop: process it again soon,
  // after the loop's other events (a kick to itself).
  virtual void requeue(uint16_t queue) = 0;
};

// An fd of a device's back-end that the event loop watches for input, and what the loop thread
// then calls (e.g. vsock's Unix-socket side).
struct BackendFd {
  int fd = -1;
  std::function<void()> on_readable;
};

// Everything a device gets when the driver sets DRIVER_OK.
struct ActivateArgs {
  const GuestMemory& memory;
  std::vector<Queue> queues;  // one per num_queues(), in order; some may be not ready()
  uint64_t acked_features;    // what the driver accepted (transport bits included)
  VirtioSignals& signals;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual const char* name() const = 0;          // for logs: "virtio-blk"
  virtual uint32_t device_type() const = 0;      // virtio device id (virtio_spec.h)
  virtual uint64_t device_features() const = 0;  // device-specific bits; the transport adds
                                                 // VERSION_1 and the ring features
  virtual uint16_t num_queues() const = 0;
  virtual uint16_t queue_max_size(uint16_t index) const = 0;  // a power of two

  // Device configuration space (offset 0 = transport offset 0x100). Reads past the end of the
  // device's config see zeros; writes there are ignored.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;

  // The driver set DRIVER_OK. Returns false when the device cannot run with what it was given
  // (the transport then sets NEEDS_RESET). Must not block: it runs on a vCPU thread.
  virtual bool activate(ActivateArgs args) = 0;
  // The driver wrote 0 to Status. Afterwards the device touches neither guest memory nor the
  // signals until the next activate().
  virtual void reset() = 0;
  // The driver kicked queue `index` (event-loop thread). Ignored while not active.
  virtual void queue_notify(uint16_t index) = 0;

  // Snapshots (DESIGN.md rule 1). save_state() runs while the vCPUs are paused, on the
  // event-loop thread. restore_state() runs on a device freshly built from the same
  // configuration, before it is activated (the transport's restore does that): it throws Error
  // when `s` is another device's state or does not match this device (e.g. a disk of another
  // size), and otherwise adopts what the guest already knows.
  virtual VirtioDeviceState save_state() const = 0;
  virtual void restore_state(const VirtioDeviceState& s) = 0;
  // The live queues, ring positions included, while the device is active; nullopt while it is
  // not. For the transport's save(): after activation the device, not the transport, knows
  // how far it got in each ring.
  virtual std::optional<std::vector<QueueState>> save_queues() const = 0;

  // The back-end fds to watch, asked once when the machine attaches the device (before the
  // event loop runs). The fds stay the device's; the handlers run on the event-loop thread
  // while the device lives. Default: none.
  virtual std::vector<BackendFd> backend_fds() { return {}; }

  // Starts the device's own threads (virtio-blk's I/O thread), called by the machine once, as
  // it starts its vCPU threads (privileges already dropped); `on_start` runs first thing on
  // each (the jail's seccomp filter for device threads). Throws Error. Default: none.
  virtual void start_threads(const std::function<void()>& /*on_start*/) {}
  // Finishes the requests in flight on those threads and returns their chains to the driver.
  // The machine calls it before saving state (vCPUs paused, event-loop thread), so a snapshot
  // never holds a request the guest submitted that no restored device will complete.
  virtual void quiesce() {}
};

// The shape every wisp device shares: one mutex, the queues and memory handed over at
// activation, and counters for what the guest got wrong. A device implements the pure virtual
// members plus process_queue(); the hooks run with the device lock held.
class VirtioDeviceBase : public VirtioDevice {
 public:
  bool activate(ActivateArgs args) final;
  void reset() final;
  void queue_notify(uint16_t index) final;
  std::optional<std::vector<QueueState>> save_queues() const final;

  bool is_active() const;
  // Requests the guest got wrong (malformed chains, bad headers), counted over the device's life.
  uint64_t bad_requests() const { return bad_requests_.load(std::memory_order_relaxed); }

 protected:
  // Lock held, just activated: may refuse (false). Default: accept.
  virtual bool on_activate() { return true; }
  // Lock held, queues about to be dropped.
  virtual void on_reset() {}
  // Lock held, device active: drain queue `index`.
  virtual void process_queue(uint16_t index) = 0;

  // For a device's own event-loop handlers (e.g. a back-end socket became readable): take the
  // lock, then check is_active_locked() before touching queues.
  std::unique_lock<std::mutex> lock_state() { return std::unique_lock(mu_); }
  bool is_active_locked() const { return active_; }

  // Valid only with the lock held while active.
  Queue& queue(uint16_t index) { return queues_[index]; }
  const GuestMemory& memory() const { return *memory_; }
  VirtioSignals& signals() { return *signals_; }
  uint64_t acked_features() const { return acked_features_; }

  // Counts a guest mistake and logs the first few (a hostile guest must not flood the log).
  void count_bad_request(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  // Gives a malformed chain back to the driver with nothing written, and counts it.
  void discard_chain(uint16_t index, const DescriptorChain& chain);
  // Raises the used-buffer interrupt for `index` if the driver wants one now.
  void notify_if_needed(uint16_t index);

  // The request loop every simple device runs on a kick: pops chains until the ring is empty
  // (with notifications suppressed while draining, then re-checked, so no kick is lost),
  // returns malformed chains empty, and gives each good one to `serve`, whose result is the
  // number of bytes written into the chain for the used ring. One interrupt at the end, if
  // the driver wants it. At most one ring's worth of work per call (kick_budget()): then it
  // requeues itself and returns, so a guest that refills its ring as fast as it is served, or
  // whose buffers overlap its own avail ring, cannot hold the event loop. Call with the state
  // lock held while active. `admit` (a rate limiter's, e.g.) is asked before a good chain is
  // served: false puts it back in the ring and stops, notifications left off, for the caller
  // to come back (its timer) rather than the guest's next kick.
  template <typename Serve>
  void drain_queue(uint16_t index, Serve&& serve) {
    drain_queue(index, serve, [](const DescriptorChain&) { return true; });
  }
  template <typename Serve, typename Admit>
  void drain_queue(uint16_t index, Serve&& serve, Admit&& admit) {
    Queue& q = queue(index);
    if (!q.ready()) return;
    uint32_t budget = kick_budget(q);
    for (;;) {
      q.disable_notification(memory());
      while (budget > 0) {
        auto chain = q.pop(memory());
        if (!chain) break;
        if (chain->ok() && !admit(*chain)) {
          q.undo_pop();
          notify_if_needed(index);
          return;
        }
        --budget;
        if (!chain->ok()) {
          discard_chain(index, *chain);
          continue;
        }
        q.add_used(memory(), chain->head(), serve(*chain));
      }
      if (budget == 0) {
        signals().requeue(index);
        break;
      }
      if (!q.enable_notification(memory())) break;
      --budget;  // a re-check that finds more work counts too, or a ring could spin here
    }
    notify_if_needed(index);
  }

  // How many chains one kick serves before the device yields (drain_queue, vsock TX).
  static uint32_t kick_budget(const Queue& q) { return q.size(); }

 private:
  mutable std::mutex mu_;
  bool active_ = false;
  const GuestMemory* memory_ = nullptr;
  VirtioSignals* signals_ = nullptr;
  uint64_t acked_features_ = 0;
  std::vector<Queue> queues_;
  std::atomic<uint64_t> bad_requests_{0};
};

// Copies the part of `config` at [offset, offset + data.size()) into `data`, zeros elsewhere:
// read_config() for devices whose configuration is a plain byte image.
void read_config_bytes(std::span<const uint8_t> config, uint64_t offset, std::span<uint8_t> data);

}  // namespace wisp
