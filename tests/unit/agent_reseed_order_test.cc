// agent/reseed_order.h: a handler call pipelined behind agent.resumed runs only after the
// reseed finished, and not at all when it failed. A fake Agent records what ran, in order.
#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/debug.h>

#include <memory>
#include <string>
#include <vector>

#include "agent/reseed_order.h"
#include "api/agent.capnp.h"

namespace wisp::agent {
namespace {

class FakeAgent final : public api::Agent::Server {
 public:
  FakeAgent(std::vector<std::string>& log, kj::Promise<void> reseed)
      : log_(log), reseed_(reseed.fork()) {}

 protected:
  kj::Promise<void> resumed(ResumedContext) override {
    log_.push_back("resumed");
    return reseed_.addBranch();
  }
  kj::Promise<void> invoke(InvokeContext context) override {
    auto payload = context.getParams().getRequest().getPayload();
    log_.push_back("invoke " + std::string(payload.asChars().begin(), payload.size()));
    context.getResults().initResult().setExitCode(7);
    return kj::READY_NOW;
  }
  kj::Promise<void> ping(PingContext context) override {
    log_.push_back("ping");
    context.getResults().initInfo().setProtocolVersion(1);
    return kj::READY_NOW;
  }

 private:
  std::vector<std::string>& log_;
  kj::ForkedPromise<void> reseed_;
};

class ReseedOrderTest : public ::testing::Test {
 protected:
  // The agent behind the wrapper; its resumed ends when `reseed` does.
  api::Agent::Client agent(kj::Promise<void> reseed) {
    return reseed_ordered(kj::heap<FakeAgent>(log_, kj::mv(reseed))).castAs<api::Agent>();
  }
  static kj::Promise<capnp::Response<api::Agent::InvokeResults>> invoke(api::Agent::Client& a,
                                                                        const char* payload) {
    auto req = a.invokeRequest();
    req.initRequest().setPayload(kj::StringPtr(payload).asBytes());
    return req.send();
  }

  // Behind a pointer: KJ's destructors may throw, which a gtest fixture's may not.
  struct Loop {
    kj::EventLoop loop;
    kj::WaitScope ws{loop};
  };
  std::vector<std::string> log_;
  std::unique_ptr<Loop> l_ = std::make_unique<Loop>();
  kj::WaitScope& ws_ = l_->ws;
};

TEST_F(ReseedOrderTest, AnInvokeSentWithResumedRunsAfterTheReseedEnds) {
  auto reseed = kj::newPromiseAndFulfiller<void>();
  auto a = agent(kj::mv(reseed.promise));
  auto resumed = a.resumedRequest().send();
  auto invoked = invoke(a, "x");
  ws_.poll();
  EXPECT_EQ(log_, std::vector<std::string>{"resumed"});  // the reseed is still running
  reseed.fulfiller->fulfill();
  resumed.wait(ws_);
  EXPECT_EQ(invoked.wait(ws_).getResult().getExitCode(), 7);
  EXPECT_EQ(log_, (std::vector<std::string>{"resumed", "invoke x"}));
}

TEST_F(ReseedOrderTest, AFailedReseedRunsNoHandler) {
  auto a = agent(KJ_EXCEPTION(FAILED, "RNDADDENTROPY failed"));
  auto resumed = a.resumedRequest().send();
  auto invoked = invoke(a, "x");
  auto streamed = a.execStreamRequest().send();
  EXPECT_ANY_THROW(resumed.wait(ws_));
  try {
    invoked.wait(ws_);
    ADD_FAILURE() << "the invoke ran after a failed reseed";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("reseed"), std::string::npos)
        << e.getDescription().cStr();
  }
  EXPECT_ANY_THROW(streamed.wait(ws_));
  EXPECT_EQ(log_, std::vector<std::string>{"resumed"});
  // Calls that run no handler still go through.
  EXPECT_EQ(a.pingRequest().send().wait(ws_).getInfo().getProtocolVersion(), 1u);
}

TEST_F(ReseedOrderTest, CallsWithoutResumedGoStraightThrough) {
  auto never = kj::newPromiseAndFulfiller<void>();
  auto a = agent(kj::mv(never.promise));
  EXPECT_EQ(invoke(a, "a").wait(ws_).getResult().getExitCode(), 7);
  EXPECT_EQ(a.pingRequest().send().wait(ws_).getInfo().getProtocolVersion(), 1u);
  EXPECT_EQ(log_, (std::vector<std::string>{"invoke a", "ping"}));
}

}  // namespace
}  // namespace wisp::agent
