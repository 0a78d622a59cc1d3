#include "vmm/virtio/queue_throttle.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

namespace wisp {

QueueThrottle::QueueThrottle(const RateLimitConfig& config, Clock clock)
    : clock_(std::move(clock)) {
  limiter_ = RateLimiter(config, now());
  if (!limiter_.limits()) return;
  timer_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_) throw_errno("rate limiter: timerfd_create");
}

uint64_t QueueThrottle::now() const { return clock_ ? clock_() : now_ns(); }

bool QueueThrottle::admit(uint64_t bytes) {
  if (!limiter_.limits()) return true;
  if (blocked_) return false;  // the timer resumes the queue; until then nothing goes
  uint64_t wait = limiter_.consume(bytes, now());
  if (wait == 0) return true;
  ++throttled_;
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(wait / 1'000'000'000);
  its.it_value.tv_nsec = static_cast<long>(wait % 1'000'000'000);
  if (timerfd_settime(timer_.get(), 0, &its, nullptr) != 0) {
    // Without a timer nothing would resume the queue: let the request go instead.
    LOG_ERROR("rate limiter: timerfd_settime: %s; the request goes unthrottled",
              std::strerror(errno));
    return true;
  }
  blocked_ = true;
  return false;
}

bool QueueThrottle::on_timer() {
  uint64_t expirations;
  [[maybe_unused]] ssize_t r = ::read(timer_.get(), &expirations, sizeof(expirations));
  bool was = blocked_;
  blocked_ = false;
  return was;
}

}  // namespace wisp
