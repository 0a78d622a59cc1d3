// agent/invocation.h's after_from_now: a call's time limit counts from the clock, not from the
// event loop's time. kj takes the loop's time when it waits for events, so work done without a
// wait in between (here a busy 300 ms; in a guest, the pause of a warm clone, whose calls
// arrived meanwhile) leaves it behind: afterDelay counts from that old time and fires early,
// after_from_now does not.
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <chrono>
#include <thread>

#include "agent/invocation.h"
#include "base/clock.h"

namespace wisp::agent {
namespace {

TEST(AgentCallTimer, ALimitCountsFromTheClockNotFromTheLoopsLastWait) {
  auto io = kj::setupAsyncIo();
  kj::Timer& timer = io.provider->getTimer();
  // The loop's time is taken now, in this wait; then 300 ms pass without another.
  timer.afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  uint64_t armed = now_ns();
  auto from_loop_time = timer.afterDelay(200 * kj::MILLISECONDS).then([] { return now_ns(); });
  auto from_now = after_from_now(timer, 200 * kj::MILLISECONDS).then([] { return now_ns(); });
  double loop_ms = static_cast<double>(from_loop_time.wait(io.waitScope) - armed) / 1e6;
  double now_ms = static_cast<double>(from_now.wait(io.waitScope) - armed) / 1e6;
  EXPECT_LT(loop_ms, 150) << "kj's loop time was not behind: the premise of this test fails";
  EXPECT_GE(now_ms, 195) << "after_from_now fired early";
}

}  // namespace
}  // namespace wisp::agent
