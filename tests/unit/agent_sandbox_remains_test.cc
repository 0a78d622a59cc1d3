#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <unistd.h>

#include "agent/sandbox_remains.h"

namespace wisp::agent {
namespace {

class FailTest final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override { ADD_FAILURE() << e.getDescription().cStr(); }
};

bool is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

// Namespaces as held: here any open descriptors stand in for them.
HeldNamespaces some_namespaces(int* net_fd) {
  HeldNamespaces held{kj::AutoCloseFd(open("/dev/null", O_RDONLY | O_CLOEXEC)),
                      kj::AutoCloseFd(open("/dev/null", O_RDONLY | O_CLOEXEC)), nullptr};
  *net_fd = held.net.get();
  return held;
}

TEST(SandboxRemains, DroppedAfterTheDelayNotBefore) {
  auto io = kj::setupAsyncIo();
  FailTest errors;
  kj::TaskSet tasks(errors);
  SandboxRemains remains(io.provider->getTimer(), tasks);
  int net = -1;
  remains.drop_later(some_namespaces(&net), kj::Own<Cgroup>(), 30 * kj::MILLISECONDS);
  EXPECT_EQ(remains.pending(), 1u);
  EXPECT_TRUE(is_open(net));
  io.provider->getTimer().afterDelay(5 * kj::MILLISECONDS).wait(io.waitScope);
  EXPECT_TRUE(is_open(net)) << "dropped before its delay";
  io.provider->getTimer().afterDelay(60 * kj::MILLISECONDS).wait(io.waitScope);
  EXPECT_EQ(remains.pending(), 0u);
  EXPECT_FALSE(is_open(net));
}

TEST(SandboxRemains, DropAllGoesAtOnceAndTheTimerFindsNothingLater) {
  auto io = kj::setupAsyncIo();
  FailTest errors;
  kj::TaskSet tasks(errors);
  SandboxRemains remains(io.provider->getTimer(), tasks);
  int first = -1, second = -1;
  remains.drop_later(some_namespaces(&first), kj::Own<Cgroup>(), 20 * kj::MILLISECONDS);
  remains.drop_later(some_namespaces(&second), kj::Own<Cgroup>(), 20 * kj::MILLISECONDS);
  EXPECT_EQ(remains.pending(), 2u);
  remains.drop_all();
  EXPECT_EQ(remains.pending(), 0u);
  EXPECT_FALSE(is_open(first));
  EXPECT_FALSE(is_open(second));
  // A later one is not dropped by the earlier ones' timers.
  int third = -1;
  remains.drop_later(some_namespaces(&third), kj::Own<Cgroup>(), 200 * kj::MILLISECONDS);
  io.provider->getTimer().afterDelay(40 * kj::MILLISECONDS).wait(io.waitScope);
  EXPECT_EQ(remains.pending(), 1u);
  EXPECT_TRUE(is_open(third));
}

}  // namespace
}  // namespace wisp::agent
