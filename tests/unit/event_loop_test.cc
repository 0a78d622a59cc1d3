// The event loop's own bookkeeping: the longest iteration it reports, which is how a test (and
// `--timings`) sees whether anything held the loop.
#include "vmm/event/event_loop.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace wisp {
namespace {

TEST(EventLoop, ReportsItsLongestIteration) {
  EventLoop loop;
  EXPECT_EQ(loop.longest_iteration_ns(), 0u);
  loop.add_timer(1, [] { usleep(30 * 1000); });  // a handler that holds the loop 30 ms
  loop.add_timer(60, [&loop] { loop.stop(7); });
  EXPECT_EQ(loop.run(), 7);
  EXPECT_GE(loop.longest_iteration_ns(), 30'000'000u);
  EXPECT_LT(loop.longest_iteration_ns(), 1'000'000'000u);
}

TEST(EventLoop, QuickHandlersKeepTheLongestIterationShort) {
  EventLoop loop;
  UniqueFd fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  int count = 0;
  loop.add(fd.get(), [&](uint32_t) {
    uint64_t v;
    [[maybe_unused]] ssize_t r = ::read(fd.get(), &v, sizeof(v));
    if (++count == 100) loop.stop();
    uint64_t one = 1;
    r = ::write(fd.get(), &one, sizeof(one));
  });
  uint64_t one = 1;
  ASSERT_EQ(::write(fd.get(), &one, sizeof(one)), 8);
  loop.run();
  EXPECT_EQ(count, 100);
  EXPECT_LT(loop.longest_iteration_ns(), 20'000'000u);
}

}  // namespace
}  // namespace wisp
