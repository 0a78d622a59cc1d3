// The bookkeeping of the pause protocol: a rendezvous between the thread that pauses the machine
// (the event loop, "the controller") and the vCPU threads. The controller asks; each vCPU parks
// at its next check; the controller learns when all have and later releases them. A stop wakes
// everyone and ends any wait. No KVM in here (VcpuRunner adds the kicks), so unit tests drive it
// with plain threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace wisp {

// Thread rules: request(), wait_parked() and release() on the controller's thread; park() and
// leave() on vCPU threads; stop(), requested(), stopping() and parked() on any thread. The
// parked count is guarded by mu_; the two flags are also atomics so that a vCPU's loop can test
// them without taking the lock, and are written under mu_ so that no waiter misses a change.
class PauseGate {
 public:
  // Asks every vCPU to park at its next check (the caller then kicks them out of KVM_RUN).
  void request();
  // Blocks until `vcpus` threads are parked: true. Or, when the machine is stopping and some
  // never will park, withdraws the request (parked threads go back to their loops, which end)
  // and returns false.
  bool wait_parked(size_t vcpus);
  // Withdraws the request: parked threads return from park().
  void release();

  bool requested() const { return requested_.load(); }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }

  // Counts the calling vCPU thread as parked until release() or stop().
  void park();
  // The calling vCPU thread left its loop for good (guest power-off, error, stop): wakes a
  // wait_parked() that would otherwise wait for it.
  void leave();

  // The machine is stopping: vCPU loops end at their next check, parked threads at once, and
  // wait_parked() stops waiting. Stays set.
  void stop();

  size_t parked() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> requested_{false};
  std::atomic<bool> stopping_{false};
  size_t parked_ = 0;
};

}  // namespace wisp
