// api/agent_client: AgentClient::connect_with, the standalone `wisp invoke`'s calls that travel
// with the connection request. A fake VMM vsock bridge (on a thread and KJ loop of its own: the
// synchronous client runs its thread's loop) refuses the first connection (it closes it after
// the CONNECT line, as the VMM does when the guest answers its request with a reset) and
// accepts the second, answering "OK" only once the calls' bytes are already queued behind the
// line. The calls on the refused connection are made again on the new one, and each reaches
// the agent once, the reseed first.
#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <future>
#include <string>
#include <thread>
#include <vector>

#include "api/agent_client.h"
#include "tests/unit/recording_agent.h"
#include "tests/unit/vsock_bridge_socket.h"

namespace wisp::client {
namespace {

using testing::RecordingAgent;
constexpr const char* kConnectLine = testing::kAgentConnectLine;
constexpr size_t kLineBytes = testing::kAgentConnectLineBytes;

// What the fake bridge saw; read once its thread has ended.
struct BridgeLog {
  std::vector<std::string> lines;
  std::vector<std::string> calls;
  bool queued_before_ok = false;
  std::string error;
};

// Waits (up to `tries` ms) until the client's bytes are queued on `stream`, unread.
kj::Promise<void> until_queued(kj::Timer& timer, kj::AsyncIoStream& stream, int tries,
                               bool* queued) {
  char c;
  int fd = -1;
  KJ_IF_MAYBE (f, stream.getFd()) {
    fd = *f;
  }
  if (fd >= 0 && ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
    *queued = true;
    return kj::READY_NOW;
  }
  if (tries == 0) return kj::READY_NOW;
  return timer.afterDelay(1 * kj::MILLISECONDS).then([&timer, &stream, tries, queued] {
    return until_queued(timer, stream, tries - 1, queued);
  });
}

// The bridge's thread: refuses one connection, accepts the next and serves the fake agent on
// it until the client goes.
void run_bridge(std::promise<std::string>& path, BridgeLog& log) {
  auto io = kj::setupAsyncIo();
  service::VsockBridgeSocket socket(io);
  path.set_value(socket.path());
  char line[kLineBytes] = {};
  kj::Own<kj::AsyncIoStream> accepted;
  kj::Own<capnp::TwoPartyServer> server;
  auto refuse_one = socket.listener().accept().then([&](kj::Own<kj::AsyncIoStream> s) {
    auto& stream = *s;
    return stream.read(line, kLineBytes).attach(kj::mv(s)).then([&] {
      log.lines.emplace_back(line, kLineBytes);
    });
  });
  auto accept_one = [&] {
    return socket.listener().accept().then([&](kj::Own<kj::AsyncIoStream> s) {
      accepted = kj::mv(s);
      auto& stream = *accepted;
      return stream.read(line, kLineBytes)
          .then([&] {
            log.lines.emplace_back(line, kLineBytes);
            return until_queued(io.provider->getTimer(), stream, 200, &log.queued_before_ok);
          })
          .then([&stream] { return stream.write("OK 1\n", 5); })
          .then([&] {
            server = kj::heap<capnp::TwoPartyServer>(kj::heap<RecordingAgent>(log.calls));
            return server->accept(*accepted);  // until the client goes
          });
    });
  };
  try {
    refuse_one.then(accept_one).wait(io.waitScope);
  } catch (const kj::Exception& e) {
    log.error = e.getDescription().cStr();
  }
}

TEST(AgentClientFirstCallsTest, TheCallsTravelWithTheRequestAndARefusedOneIsMadeAgain) {
  std::promise<std::string> path;
  BridgeLog log;
  std::thread bridge([&] { run_bridge(path, log); });
  std::string uds = path.get_future().get();

  int made = 0;
  InvokeResult result;
  std::string failure;
  // A thread of its own too: the client's KJ loop is its thread's, none of this test's.
  std::thread caller([&] {
    try {
      ConnectOptions o;
      o.uds_path = uds;
      o.deadline = std::chrono::milliseconds(5000);
      InvokeRequest req;
      req.payload = "hello";
      req.timeout_ms = 1000;
      req.handler.name = "exec";
      req.handler.argv = {"cat"};
      uint64_t reseeded_ns = 0;
      auto agent = AgentClient::connect_with(o, [&](AgentClient& a) {
        ++made;
        result = a.resumed_then_invoke(std::string(64, 'e'), 1, req, &reseeded_ns);
      });
      EXPECT_NE(reseeded_ns, 0u);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  caller.join();
  bridge.join();  // the client is gone: the fake agent's connection ended

  EXPECT_EQ(failure, "");
  EXPECT_EQ(made, 2);  // on the refused connection, then on the accepted one
  EXPECT_TRUE(log.queued_before_ok) << "nothing was sent before the bridge's OK";
  EXPECT_EQ(result.out, "hello");
  EXPECT_EQ(log.error, "");
  ASSERT_EQ(log.lines.size(), 2u);
  EXPECT_EQ(log.lines[0], kConnectLine);
  EXPECT_EQ(log.lines[1], kConnectLine);
  EXPECT_EQ(log.calls, (std::vector<std::string>{"resumed 64", "invoke hello"}));
}

}  // namespace
}  // namespace wisp::client
