#include "vmm/vcpu/pause_gate.h"

namespace wisp {

void PauseGate::request() {
  std::lock_guard lock(mu_);
  requested_.store(true);
}

bool PauseGate::wait_parked(size_t vcpus) {
  std::unique_lock lock(mu_);
  // A vCPU that already left its loop (stopping) never parks: do not wait for it then.
  cv_.wait(lock, [&] { return parked_ == vcpus || stopping_.load(); });
  if (parked_ == vcpus) return true;
  requested_.store(false);
  cv_.notify_all();
  return false;
}

void PauseGate::release() {
  {
    std::lock_guard lock(mu_);
    requested_.store(false);
  }
  cv_.notify_all();
}

void PauseGate::park() {
  std::unique_lock lock(mu_);
  ++parked_;
  cv_.notify_all();
  cv_.wait(lock, [this] { return !requested_.load() || stopping_.load(); });
  --parked_;
}

void PauseGate::leave() {
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

void PauseGate::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_.store(true);
  }
  cv_.notify_all();
}

size_t PauseGate::parked() const {
  std::lock_guard lock(mu_);
  return parked_;
}

}  // namespace wisp
