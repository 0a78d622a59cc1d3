#include "vmm/machine/stop_request.h"

#include <cstring>

namespace wisp {

void StopRequest::request(StopReason reason, std::string detail) {
  {
    std::lock_guard lock(mu_);
    if (outcome_.reason == StopReason::kNone) {
      outcome_.reason = reason;
      if (!outcome_.panicked) outcome_.detail = std::move(detail);
    }
  }
  on_request_();
}

void StopRequest::request_by_signal(int signo) {
  {
    std::lock_guard lock(mu_);
    outcome_.signal = signo;
  }
  request(StopReason::kSignal, std::string("stopped by ") + strsignal(signo));
}

void StopRequest::note_panic(std::string panic_line) {
  std::lock_guard lock(mu_);
  outcome_.panicked = true;
  outcome_.detail = std::move(panic_line);
}

StopRequest::Outcome StopRequest::outcome() const {
  std::lock_guard lock(mu_);
  Outcome o = outcome_;
  if (o.panicked) o.reason = StopReason::kCrash;
  return o;
}

}  // namespace wisp
