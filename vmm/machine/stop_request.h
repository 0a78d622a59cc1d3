// Why the machine stops, from whoever sees it first: a vCPU (an exit verdict or an error), a
// device (ACPI power-off, i8042 reset), the console watch (panic, halt) or a host signal. The
// first request wins. A kernel panic seen on the console makes the outcome a crash with the
// panic line as its detail, whatever ends the machine afterwards (panic=-1 reboots at once).
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "vmm/vcpu/exit_handler.h"

namespace wisp {

// Thread rules: any member from any thread; the record is guarded by mu_. `on_request` runs on
// the requesting thread, outside the lock, after every request (so it must be thread-safe and
// idempotent: the machine's stops the event loop and the vCPU loops).
class StopRequest {
 public:
  struct Outcome {
    StopReason reason = StopReason::kNone;  // kCrash when panicked
    std::string detail;                     // the panic line, or the first request's detail
    bool panicked = false;
    int signal = 0;  // the host signal that asked, if one did
  };

  explicit StopRequest(std::function<void()> on_request) : on_request_(std::move(on_request)) {}

  void request(StopReason reason, std::string detail);
  // "stopped by <signal name>"; the signal is recorded even when another reason came first.
  void request_by_signal(int signo);
  // The kernel panicked; it goes on printing its backtrace, so this alone does not stop.
  void note_panic(std::string panic_line);

  Outcome outcome() const;

 private:
  const std::function<void()> on_request_;
  mutable std::mutex mu_;
  Outcome outcome_;
};

}  // namespace wisp
