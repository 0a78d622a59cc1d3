// Stops a running manager operation from another thread (the CLI's signal watcher, a
// service shutting down): cancel() kills the VMM the operation has registered, so the
// operation's blocking calls on that VM fail and it unwinds through its destructors (VMM
// reaped, runtime directory removed). An operation checks cancelled() between its steps.
//
// Thread-safe: cancel() and cancelled() from any thread; a Watch lives on the operation's.
#pragma once

#include <atomic>
#include <mutex>

#include "manager/vmm_child.h"

namespace wisp::manager {

class Cancellation {
 public:
  void cancel();
  bool cancelled() const { return cancelled_.load(); }

  // While a Watch lives, cancel() kills `vmm`; if cancel() came first, it is killed at once.
  // `cancellation` may be null (an operation nobody can cancel).
  class Watch {
   public:
    Watch(Cancellation* cancellation, VmmChild& vmm);
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

   private:
    Cancellation* cancellation_;
  };

 private:
  std::mutex mu_;
  VmmChild* vmm_ = nullptr;  // guarded by mu_
  std::atomic<bool> cancelled_{false};
};

}  // namespace wisp::manager
