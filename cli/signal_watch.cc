#include "cli/signal_watch.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

#include "base/error.h"
#include "base/exit_codes.h"

namespace wisp::cli {
namespace {

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  return set;
}

UniqueFd make_eventfd() {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd) throw_errno("eventfd");
  return fd;
}

void notify(int fd) {
  uint64_t one = 1;
  if (::write(fd, &one, sizeof(one)) < 0) {
    // An eventfd only fails to count past 2^64-2: it is readable either way.
  }
}

}  // namespace

SignalWatch::SignalWatch(std::function<void(int)> on_signal, std::chrono::milliseconds grace) {
  sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, &old_mask_);
  signal_fd_ = UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_) throw_errno("signalfd");
  stop_fd_ = make_eventfd();
  cancel_fd_ = make_eventfd();
  thread_ =
      std::thread([this, on_signal = std::move(on_signal), grace] { watch(on_signal, grace); });
}

SignalWatch::~SignalWatch() {
  notify(stop_fd_.get());
  thread_.join();
  // After a signal the command is ending with 128+N: a repeated one (a second Ctrl-C) stays
  // blocked instead of turning that exit into a death by signal.
  if (!signal_) pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

void SignalWatch::watch(std::function<void(int)> on_signal, std::chrono::milliseconds grace) {
  for (;;) {
    pollfd p[2] = {{signal_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno == EINTR) continue;
    if (p[1].revents) return;
    signalfd_siginfo info;
    if (::read(signal_fd_.get(), &info, sizeof(info)) != sizeof(info)) continue;
    int sig = static_cast<int>(info.ssi_signo);
    signal_ = sig;
    notify(cancel_fd_.get());
    on_signal(sig);
    // The main thread now unwinds; if it is stuck where nothing we killed can reach it, go.
    pollfd stop{stop_fd_.get(), POLLIN, 0};
    while (::poll(&stop, 1, static_cast<int>(grace.count())) < 0 && errno == EINTR) {
    }
    if (!stop.revents) _exit(kExitSignalBase + sig);
    return;
  }
}

}  // namespace wisp::cli
