// The VMM's one event loop (epoll): console input, device back-ends, control channels and timers
// register fds here and are called on the loop's thread. Other threads only call stop() and
// run_on_loop().
#pragma once

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "base/unique_fd.h"

struct epoll_event;

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

  // Thread-safe, for threads other than the loop's (the control channel's): runs `fn` on the
  // loop thread between two events and waits until it has run; an exception it throws is
  // rethrown here. Returns false without running it when the loop has finished, or finishes
  // before getting to it, or cancel_calls() was called.
  bool run_on_loop(const std::function<void()>& fn);
  // Thread-safe: fails every waiting and every later run_on_loop() call.
  void cancel_calls();

  // The longest time one iteration took (from epoll_wait's return to the end of the handlers
  // it woke), in nanoseconds, since run() started. Thread-safe. What a guest or client could
  // make everything else on the loop wait (control calls, stop signals, other devices).
  uint64_t longest_iteration_ns() const { return longest_ns_.load(std::memory_order_relaxed); }

 private:
  struct Call {
    const std::function<void()>* fn;
    bool done = false;
    bool ran = false;
    std::exception_ptr error;
  };
  void run_calls();
  void dispatch(const epoll_event& event);
  // Keeps the longest iteration; logs a new longest one past kSlowIterationNs (debug level).
  void note_iteration(uint64_t took_ns, const epoll_event* events, int n);
  static constexpr uint64_t kSlowIterationNs = 10'000'000;

  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd written by stop()
  std::map<int, std::shared_ptr<Handler>> handlers_;
  static constexpr int64_t kRunning = INT64_MIN;
  std::atomic<int64_t> stop_code_{kRunning};  // written by any thread, first stop() wins
  std::atomic<uint64_t> longest_ns_{0};       // written by the loop thread only
  // run_on_loop() requests: queued by their threads, run and marked done by the loop thread.
  std::mutex calls_mu_;
  std::condition_variable calls_cv_;
  std::deque<Call*> calls_;    // each points into a waiting run_on_loop() frame
  bool calls_closed_ = false;  // the loop has finished: no call will run
};

}  // namespace wisp
