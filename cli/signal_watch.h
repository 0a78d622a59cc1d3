// SIGINT, SIGTERM and SIGHUP for a command that must clean up after itself (kill its VMM,
// remove its runtime directory): the signals are blocked and read from a signalfd by a watcher
// thread, which calls `on_signal` once (e.g. cancel the operation, so the main thread's
// blocking calls fail and its destructors run). No signal handler, no global state.
//
// Construct it on the main thread before any other thread starts (threads inherit the mask).
// If the main thread has not finished `grace` after the signal, the process exits 128+N.
#pragma once

#include <signal.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "base/unique_fd.h"

namespace wisp::cli {

class SignalWatch {
 public:
  SignalWatch(std::function<void(int signal)> on_signal, std::chrono::milliseconds grace);
  // Stops the watcher and unblocks the signals again, unless one arrived.
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

  // The signal that arrived (0: none yet).
  int signal() const { return signal_.load(); }
  // Readable once a signal has arrived: for poll() in a blocking read.
  int cancel_fd() const { return cancel_fd_.get(); }

 private:
  void watch(std::function<void(int)> on_signal, std::chrono::milliseconds grace);

  sigset_t old_mask_;
  UniqueFd signal_fd_;
  UniqueFd stop_fd_;    // eventfd: the destructor's "stop watching"
  UniqueFd cancel_fd_;  // eventfd: written once when a signal arrives, never read
  std::atomic<int> signal_{0};
  std::thread thread_;
};

}  // namespace wisp::cli
