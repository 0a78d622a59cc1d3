// One virtqueue's rate limiter (base/token_bucket.h) and the timer that resumes the queue: the
// hook a device calls before it takes a request off a queue (a disk request, a TX frame) or
// delivers one (an RX frame). When the request does not fit, the device leaves it where it is,
// stops serving that queue, and the timer (a timerfd the event loop watches, from the device's
// backend_fds()) wakes it when the buckets hold enough: a guest over its limit is throttled,
// never failed, and nothing spins meanwhile.
//
// Threads: admit() and on_timer() on the event-loop thread (timerfd_settime, read: the loop's
// seccomp table has both), under the device lock; forget() on any thread (no system call: a
// device reset runs on a vCPU thread). The timer fd exists only when the config limits.
#pragma once

#include <cstdint>
#include <functional>

#include "base/token_bucket.h"
#include "base/unique_fd.h"

namespace wisp {

class QueueThrottle {
 public:
  using Clock = std::function<uint64_t()>;  // CLOCK_MONOTONIC ns; base/clock.h's now_ns

  QueueThrottle() = default;  // does not limit
  // Throws Error when the timer cannot be made. `clock` is for tests (a fake time).
  explicit QueueThrottle(const RateLimitConfig& config, Clock clock = {});

  bool limits() const { return limiter_.limits(); }
  // True: a request of `bytes` may go now (the buckets are charged). False: it stays on its
  // queue; the timer is armed for when it fits, and every admit() until then says false.
  bool admit(uint64_t bytes);
  bool blocked() const { return blocked_; }

  // The timer's fd for the event loop (-1 without a limit).
  int timer_fd() const { return timer_.get(); }
  // The timer fired: clears it; returns whether the queue was waiting (and should be served).
  bool on_timer();
  // A device reset: no request waits any more. A timer still armed fires and finds nothing.
  void forget() { blocked_ = false; }

  // Requests throttled (admit() said false on a fresh request) since the device was made.
  uint64_t throttled() const { return throttled_; }

 private:
  uint64_t now() const;

  RateLimiter limiter_;
  Clock clock_;
  UniqueFd timer_;
  bool blocked_ = false;
  uint64_t throttled_ = 0;
};

}  // namespace wisp
