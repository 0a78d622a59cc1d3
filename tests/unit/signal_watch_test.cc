// SIGINT/SIGTERM/SIGHUP read from a signalfd: the watcher calls back once, marks its cancel
// fd, and ends a process that does not finish within the grace period. Each case runs in a
// forked child, so the signals never reach the test runner itself.
#include "cli/signal_watch.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>

#include "base/exit_codes.h"

namespace wisp::cli {
namespace {

using std::chrono::milliseconds;

// Runs `child` in a forked process; returns its wait status.
int in_child(const std::function<int()>& child) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(child());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(SignalWatch, CallsBackOnceAndMarksTheCancelFd) {
  int status = in_child([] {
    std::atomic<int> seen{0}, calls{0};
    int sig = 0;
    {
      SignalWatch watch(
          [&](int s) {
            seen = s;
            ++calls;
          },
          milliseconds(10000));
      if (watch.signal() != 0) return 10;
      ::kill(::getpid(), SIGTERM);
      pollfd p{watch.cancel_fd(), POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) return 11;
      ::kill(::getpid(), SIGINT);  // a second one changes nothing
      sig = watch.signal();
    }
    if (sig != SIGTERM || seen != SIGTERM || calls != 1) return 12;
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SignalWatch, EndsAProcessStuckPastTheGrace) {
  int status = in_child([] {
    SignalWatch watch([](int) {}, milliseconds(50));
    ::kill(::getpid(), SIGHUP);
    ::sleep(10);  // stuck: the watcher must end it
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), kExitSignalBase + SIGHUP);
}

}  // namespace
}  // namespace wisp::cli
