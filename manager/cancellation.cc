#include "manager/cancellation.h"

namespace wisp::manager {

void Cancellation::cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (vmm_) vmm_->terminate();
}

Cancellation::Watch::Watch(Cancellation* cancellation, VmmChild& vmm)
    : cancellation_(cancellation) {
  if (!cancellation_) return;
  std::lock_guard<std::mutex> lock(cancellation_->mu_);
  cancellation_->vmm_ = &vmm;
  if (cancellation_->cancelled_) vmm.terminate();
}

Cancellation::Watch::~Watch() {
  if (!cancellation_) return;
  std::lock_guard<std::mutex> lock(cancellation_->mu_);
  cancellation_->vmm_ = nullptr;
}

}  // namespace wisp::manager
