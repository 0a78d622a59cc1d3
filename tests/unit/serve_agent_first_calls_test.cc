// manager/service/vm_links: AgentConnectOptions::first_calls, the calls that travel with the
// connection request. A fake VMM vsock bridge refuses the first connection (it closes it after
// the CONNECT line, as the VMM does when the guest answers its request with a reset) and
// accepts the second, answering "OK" only once the calls' bytes are already queued behind the
// line: the reseed and the invoke went out before the guest's answer. The calls on the refused
// connection are made again on the new one, and each reaches the agent once, in order.
#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "manager/service/vm_links.h"
#include "tests/unit/recording_agent.h"
#include "tests/unit/vsock_bridge_socket.h"

namespace wisp::service {
namespace {

using testing::RecordingAgent;
constexpr const char* kConnectLine = testing::kAgentConnectLine;
constexpr size_t kLineBytes = testing::kAgentConnectLineBytes;

class ServeAgentFirstCallsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bridge_ = refuse_one().then([this] { return accept_one(); }).eagerlyEvaluate([this](auto&& e) {
      bridge_error_ = e.getDescription().cStr();
    });
  }
  ~ServeAgentFirstCallsTest() noexcept override {}
  void TearDown() override {
    link_ = nullptr;
    bridge_ = nullptr;
    server_ = nullptr;
  }

  // The first connection: its line read, then closed unanswered (what follows the line unread).
  kj::Promise<void> refuse_one() {
    return socket_.listener().accept().then([this](kj::Own<kj::AsyncIoStream> s) {
      auto& stream = *s;
      return stream.read(line_, kLineBytes).attach(kj::mv(s)).then([this] {
        lines_.emplace_back(line_, kLineBytes);
      });
    });
  }
  // The second: its line read, "OK" written only once bytes wait behind the line, then the
  // fake agent on it.
  kj::Promise<void> accept_one() {
    return socket_.listener().accept().then([this](kj::Own<kj::AsyncIoStream> s) {
      auto& stream = *s;
      stream_ = kj::mv(s);
      return stream.read(line_, kLineBytes)
          .then([this, &stream] {
            lines_.emplace_back(line_, kLineBytes);
            return until_queued(stream, 200);
          })
          .then([&stream] { return stream.write("OK 1\n", 5); })
          .then([this] {
            server_ = kj::heap<capnp::TwoPartyServer>(kj::heap<RecordingAgent>(calls_));
            return server_->accept(kj::mv(stream_));
          });
    });
  }
  // Waits (up to `tries` ms) until the client's bytes are queued on `stream`, unread.
  kj::Promise<void> until_queued(kj::AsyncIoStream& stream, int tries) {
    char c;
    int fd = -1;
    KJ_IF_MAYBE (f, stream.getFd()) {
      fd = *f;
    }
    if (fd >= 0 && ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
      queued_before_ok_ = true;
      return kj::READY_NOW;
    }
    if (tries == 0) return kj::READY_NOW;
    return io_.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).then([this, &stream, tries] {
      return until_queued(stream, tries - 1);
    });
  }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  VsockBridgeSocket socket_{io_};
  char line_[kLineBytes] = {};
  std::vector<std::string> lines_;
  std::vector<std::string> calls_;
  bool queued_before_ok_ = false;
  std::string bridge_error_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyServer> server_;
  kj::Promise<void> bridge_ = nullptr;
  kj::Own<AgentLink> link_;
};

TEST_F(ServeAgentFirstCallsTest, TheCallsTravelWithTheRequestAndARefusedOneIsMadeAgain) {
  int made = 0;
  kj::Promise<void> reseeded = nullptr;
  kj::Promise<client::InvokeResult> invoked = nullptr;
  client::InvokeRequest req;
  req.payload = "hello";
  req.timeout_ms = 1000;
  req.handler.name = "exec";
  req.handler.argv = {"cat"};
  AgentConnectOptions o;
  o.uds_path = socket_.path();
  o.deadline = std::chrono::milliseconds(5000);
  o.first_calls = [&](AgentLink& agent) {
    ++made;
    reseeded = agent.resumed_fresh();
    invoked = agent.invoke(req);
  };
  link_ = connect_agent(io_, o).wait(io_.waitScope);
  EXPECT_EQ(made, 2);  // on the refused connection, then on the accepted one
  EXPECT_TRUE(queued_before_ok_) << "nothing was sent before the bridge's OK";
  reseeded.wait(io_.waitScope);
  client::InvokeResult r = invoked.wait(io_.waitScope);
  EXPECT_EQ(r.out, "hello");
  EXPECT_EQ(bridge_error_, "");
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[0], kConnectLine);
  EXPECT_EQ(lines_[1], kConnectLine);
  // Each once, the reseed first (64 bytes of fresh entropy).
  EXPECT_EQ(calls_, (std::vector<std::string>{"resumed 64", "invoke hello"}));
  link_->accepted().wait(io_.waitScope);
}

}  // namespace
}  // namespace wisp::service
