#include "vmm/event/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

namespace wisp {

EventLoop::EventLoop()
    : epoll_(epoll_create1(EPOLL_CLOEXEC)), wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!epoll_) throw_errno("epoll_create1");
  if (!wake_) throw_errno("eventfd for the event loop");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_.get();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) throw_errno("epoll_ctl");
}

void EventLoop::add(int fd, Handler handler, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl add");
  handlers_[fd] = std::make_shared<Handler>(std::move(handler));
}

void EventLoop::remove(int fd) {
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(fd);
}

void EventLoop::add_timer(uint64_t ms, std::function<void()> fn) {
  auto tfd =
      std::make_shared<UniqueFd>(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!*tfd) throw_errno("timerfd_create");
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(ms / 1000);
  its.it_value.tv_nsec = static_cast<long>((ms % 1000) * 1000000);
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  if (timerfd_settime(tfd->get(), 0, &its, nullptr) != 0) throw_errno("timerfd_settime");
  int fd = tfd->get();
  add(fd, [this, tfd, fd, fn = std::move(fn)](uint32_t) {
    remove(fd);  // drops this handler's copy; `tfd` and `fn` live until we return
    fn();
  });
}

int EventLoop::run() {
  epoll_event events[16];
  longest_ns_.store(0, std::memory_order_relaxed);
  while (true) {
    int n = epoll_wait(epoll_.get(), events, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("epoll_wait");
    }
    uint64_t t0 = now_ns();
    for (int i = 0; i < n; ++i) dispatch(events[i]);
    note_iteration(now_ns() - t0, events, n);
    int64_t code = stop_code_.load();
    if (code != kRunning) {
      cancel_calls();
      return static_cast<int>(code);
    }
  }
}

void EventLoop::note_iteration(uint64_t took_ns, const epoll_event* events, int n) {
  if (took_ns <= longest_ns_.load(std::memory_order_relaxed)) return;
  longest_ns_.store(took_ns, std::memory_order_relaxed);
  if (took_ns < kSlowIterationNs) return;
  // Which handlers held the loop (at -vv): the fds that were ready together.
  std::string fds;
  for (int i = 0; i < n; ++i) fds += (i ? "," : "") + std::to_string(events[i].data.fd);
  LOG_DEBUG("event loop: an iteration took %.1f ms (fds %s)", static_cast<double>(took_ns) / 1e6,
            fds.c_str());
}

void EventLoop::dispatch(const epoll_event& event) {
  int fd = event.data.fd;
  if (fd == wake_.get()) {
    uint64_t v;
    [[maybe_unused]] ssize_t r = ::read(wake_.get(), &v, sizeof(v));
    run_calls();
    return;
  }
  auto it = handlers_.find(fd);
  if (it == handlers_.end()) return;
  auto keep = it->second;  // the handler may remove itself
  (*keep)(event.events);
}

bool EventLoop::run_on_loop(const std::function<void()>& fn) {
  Call call{&fn};
  std::unique_lock lock(calls_mu_);
  if (calls_closed_ || stop_code_.load() != kRunning) return false;
  calls_.push_back(&call);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(wake_.get(), &one, sizeof(one));
  calls_cv_.wait(lock, [&] { return call.done; });
  if (call.error) std::rethrow_exception(call.error);
  return call.ran;
}

void EventLoop::run_calls() {
  std::unique_lock lock(calls_mu_);
  while (!calls_.empty()) {
    Call* call = calls_.front();
    calls_.pop_front();
    lock.unlock();
    try {
      (*call->fn)();
    } catch (...) {
      call->error = std::current_exception();
    }
    lock.lock();
    call->ran = true;
    call->done = true;
    calls_cv_.notify_all();
  }
}

void EventLoop::cancel_calls() {
  std::lock_guard lock(calls_mu_);
  calls_closed_ = true;
  for (Call* call : calls_) call->done = true;
  calls_.clear();
  calls_cv_.notify_all();
}

void EventLoop::stop(int code) {
  int64_t expected = kRunning;
  stop_code_.compare_exchange_strong(expected, code);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(wake_.get(), &one, sizeof(one));
}

}  // namespace wisp
