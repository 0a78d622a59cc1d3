// The VMM's one event loop (epoll): console input, device back-ends, control channels and timers
// register fds here and are called on the loop's thread. Other threads only call stop().
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "base/unique_fd.h"

namespace wisp {

class EventLoop {
 public:
  // Called with the epoll event bits (EPOLLIN, EPOLLHUP, ...).
  using Handler = std::function<void(uint32_t events)>;

  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches `fd` for `events` (default: readable). The fd stays owned by the caller.
  void add(int fd, Handler handler, uint32_t events = 0x001 /* EPOLLIN */);
  void remove(int fd);

  // Runs until stop(); returns the code passed to stop().
  int run();
  // Thread-safe and async-signal-safe: makes run() return `code` (first call wins).
  void stop(int code = 0);

  // Runs `fn` on the loop thread after `ms` milliseconds (once).
  void add_timer(uint64_t ms, std::function<void()> fn);

 private:
  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd written by stop()
  std::map<int, std::shared_ptr<Handler>> handlers_;
  static constexpr int64_t kRunning = INT64_MIN;
  std::atomic<int64_t> stop_code_{kRunning};  // written by any thread, first stop() wins
};

}  // namespace wisp
