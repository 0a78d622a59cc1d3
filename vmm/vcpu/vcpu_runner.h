// Runs a machine's vCPUs: one thread each, blocking in KVM_RUN and handing every exit to
// handle_exit (exit_handler.h), until the guest or the host stops the machine. Pauses them for a
// snapshot and resumes them.
//
// A vCPU inside KVM_RUN leaves it only on an exit or a signal. To pause or stop, the runner sets
// the vCPU's immediate_exit (a KVM_RUN about to start returns at once) and sends it
// kick_signal() (one already inside returns EINTR); the signal's handler does nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "vmm/bus/io_bus.h"
#include "vmm/kvm/kvm.h"
#include "vmm/vcpu/exit_handler.h"
#include "vmm/vcpu/pause_gate.h"

namespace wisp {

// Thread rules: add(), start(), pause(), resume(), paused(), stop() and vcpus() belong to one
// controlling thread (the event loop); request_stop() and the counters may be used from any.
// Each vCPU thread touches only its own Vcpu (and the controller only that Vcpu's
// immediate_exit flag while it runs), the buses (whose devices lock themselves), the atomic
// counters and the gate. `on_stop` runs on the vCPU thread that saw the reason to stop.
class VcpuRunner {
 public:
  // Called when a vCPU finds a reason to stop the machine (an exit verdict, a KVM error); that
  // vCPU's thread then ends. The callee stops the rest: the other vCPUs (request_stop()) and
  // whatever else runs, such as the event loop.
  using StopFn = std::function<void(StopReason reason, std::string detail)>;

  VcpuRunner(const IoBus& pio, const IoBus& mmio, StopFn on_stop);
  ~VcpuRunner();  // stop()s running threads
  VcpuRunner(const VcpuRunner&) = delete;
  VcpuRunner& operator=(const VcpuRunner&) = delete;

  // Before start(): the vCPUs, in id order.
  void add(Vcpu vcpu);
  const std::vector<Vcpu>& vcpus() const { return vcpus_; }

  // Called first thing on each vCPU thread with its index, before it runs the guest (the jail
  // installs the thread's seccomp filter here); a throw stops the machine with that error.
  using ThreadStartFn = std::function<void(size_t index)>;

  // Installs the kick signal's handler and starts one thread per vCPU, named "vcpuN".
  void start(ThreadStartFn on_thread_start = {});
  // vCPU loops end at their next check; does not kick (stop() does). Any thread.
  void request_stop() { gate_.stop(); }
  // Ends every vCPU thread (kicking those in KVM_RUN) and joins them. Idempotent.
  void stop();

  // pause() returns once every vCPU is out of KVM_RUN with its pending I/O completed, so the
  // caller may read vCPU, device and memory state until resume(). Throws Error when the machine
  // stops instead. Both are no-ops when already in the requested state.
  void pause();
  void resume();
  bool paused() const { return paused_; }

  const ExitCounters& counters() const { return counters_; }
  // CLOCK_MONOTONIC ns when vCPU 0's thread first ran, 0 before.
  uint64_t first_run_ns() const { return first_run_ns_.load(); }

  // The signal that interrupts a vCPU blocked in KVM_RUN (SIGRTMIN is not a constant in glibc).
  static int kick_signal();

 private:
  void thread_main(size_t index, const ThreadStartFn& on_thread_start);
  void park(size_t index);
  void kick(size_t index);

  const IoBus& pio_;
  const IoBus& mmio_;
  const StopFn on_stop_;
  std::vector<Vcpu> vcpus_;
  ExitCounters counters_;
  PauseGate gate_;
  bool paused_ = false;  // controlling thread only
  std::atomic<uint64_t> first_run_ns_{0};
  std::vector<std::thread> threads_;  // last: joined before the rest is destroyed
};

}  // namespace wisp
