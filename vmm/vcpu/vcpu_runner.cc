#include "vmm/vcpu/vcpu_runner.h"

#include <pthread.h>
#include <signal.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "vmm/devices/serial.h"

namespace wisp {

int VcpuRunner::kick_signal() { return SIGRTMIN + 1; }

VcpuRunner::VcpuRunner(const IoBus& pio, const IoBus& mmio, StopFn on_stop)
    : pio_(pio), mmio_(mmio), on_stop_(std::move(on_stop)) {}

VcpuRunner::~VcpuRunner() { stop(); }

void VcpuRunner::add(Vcpu vcpu) { vcpus_.push_back(std::move(vcpu)); }

void VcpuRunner::start(ThreadStartFn on_thread_start) {
  // A handler that does nothing: its only job is to make KVM_RUN return EINTR.
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigemptyset(&sa.sa_mask);
  sigaction(kick_signal(), &sa, nullptr);

  for (size_t i = 0; i < vcpus_.size(); ++i) {
    threads_.emplace_back([this, i, on_thread_start] {
      thread_main(i, on_thread_start);
      gate_.leave();
    });
  }
}

void VcpuRunner::stop() {
  gate_.stop();
  for (size_t i = 0; i < vcpus_.size(); ++i) kick(i);
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void VcpuRunner::kick(size_t index) {
  vcpus_[index].set_immediate_exit(true);
  if (index < threads_.size() && threads_[index].joinable())
    pthread_kill(threads_[index].native_handle(), kick_signal());
}

void VcpuRunner::pause() {
  if (paused_) return;
  gate_.request();
  for (size_t i = 0; i < vcpus_.size(); ++i) kick(i);
  if (!gate_.wait_parked(vcpus_.size())) throw Error("the VM is stopping");
  for (auto& v : vcpus_) v.kvmclock_ctrl();
  paused_ = true;
}

void VcpuRunner::resume() {
  if (!paused_) return;
  for (auto& v : vcpus_) v.set_immediate_exit(false);
  gate_.release();
  paused_ = false;
}

void VcpuRunner::park(size_t index) {
  try {
    // An I/O exit is finished by the next KVM_RUN; with immediate_exit set that run returns
    // at once, so the saved registers are past the instruction (see Vcpu::save_state).
    vcpus_[index].complete_pending_io();
  } catch (const Error& e) {
    on_stop_(StopReason::kError, e.what());
  }
  gate_.park();
}

void VcpuRunner::thread_main(size_t index, const ThreadStartFn& on_thread_start) {
  Vcpu& vcpu = vcpus_[index];
  std::string name = "vcpu" + std::to_string(index);
  pthread_setname_np(pthread_self(), name.c_str());
  try {
    if (on_thread_start) on_thread_start(index);
  } catch (const Error& e) {
    on_stop_(StopReason::kError, name + ": " + e.what());
    return;
  }
  if (index == 0) {
    uint64_t expected = 0;
    first_run_ns_.compare_exchange_strong(expected, now_ns());
  }
  while (!gate_.stopping()) {
    if (gate_.requested()) {
      park(index);
      continue;
    }
    VcpuExit exit;
    try {
      exit = vcpu.run();
    } catch (const Error& e) {
      on_stop_(StopReason::kError, e.what());
      return;
    }
    ExitVerdict v = handle_exit(exit, pio_, mmio_, counters_);
    if (exit.kind == VcpuExit::Kind::kIo && exit.addr != Serial::kCom1Base)
      LOG_DEBUG("vCPU %zu: %s port 0x%llx size %u -> 0x%x", index, exit.is_write ? "out" : "in",
                static_cast<unsigned long long>(exit.addr), exit.size,
                exit.data.empty() ? 0u : exit.data[0]);
    if (!v.keep_running) {
      on_stop_(v.reason, v.detail.empty() ? std::string(stop_reason_name(v.reason))
                                          : "vCPU " + std::to_string(index) + ": " + v.detail);
      return;
    }
  }
}

}  // namespace wisp
