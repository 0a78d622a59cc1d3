// manager/service/vm_links: serve's agent link with a terminal (issue 16, TTYs). A fake VMM
// vsock bridge ("CONNECT 1024\n" / "OK 1\n") hands the connection to a fake agent: an agent
// whose ping says nothing of terminals (an older wisp-agent) gets no execStream with a
// terminal, the caller an "unsupported: terminal" error; a current one gets Handler.terminal
// and the initial size, and Process.resize reaches its process.
#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "api/agent.capnp.h"
#include "manager/service/vm_links.h"
#include "tests/unit/vsock_bridge_socket.h"

namespace wisp::service {
namespace {

struct AgentRecord {
  bool terminals = false;  // what ping answers
  int exec_streams = 0;
  bool terminal = false;
  std::pair<int, int> size{-1, -1};
  std::vector<std::pair<int, int>> resizes;
};

class FakeProcess final : public api::Process::Server {
 public:
  explicit FakeProcess(AgentRecord& r) : r_(r) {}
  kj::Promise<void> resize(ResizeContext context) override {
    r_.resizes.emplace_back(context.getParams().getWidth(), context.getParams().getHeight());
    return kj::READY_NOW;
  }

 private:
  AgentRecord& r_;
};

class FakeAgent final : public api::Agent::Server {
 public:
  explicit FakeAgent(AgentRecord& r) : r_(r) {}
  kj::Promise<void> ping(PingContext context) override {
    auto info = context.getResults().initInfo();
    info.setProtocolVersion(api::PROTOCOL_VERSION);
    info.setTerminals(r_.terminals);
    return kj::READY_NOW;
  }
  kj::Promise<void> execStream(ExecStreamContext context) override {
    ++r_.exec_streams;
    auto h = context.getParams().getHandler();
    r_.terminal = h.getTerminal();
    r_.size = {h.getConsoleWidth(), h.getConsoleHeight()};
    context.getResults().setProcess(kj::heap<FakeProcess>(r_));
    return kj::READY_NOW;
  }

 private:
  AgentRecord& r_;
};

class NoOutput final : public OutputStream {
 public:
  kj::Promise<void> stdout_chunk(kj::ArrayPtr<const kj::byte>) override { return kj::READY_NOW; }
  kj::Promise<void> stderr_chunk(kj::ArrayPtr<const kj::byte>) override { return kj::READY_NOW; }
};

class ServeAgentTerminalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The bridge: one connection, its CONNECT line answered, then the fake agent on it.
    bridge_ = socket_.listener()
                  .accept()
                  .then([this](kj::Own<kj::AsyncIoStream> s) {
                    auto& stream = *s;
                    stream_ = kj::mv(s);
                    return stream.read(line_, sizeof(line_)).then([this, &stream] {
                      return stream.write("OK 1\n", 5);
                    });
                  })
                  .then([this] {
                    server_ = kj::heap<capnp::TwoPartyServer>(kj::heap<FakeAgent>(record_));
                    return server_->accept(kj::mv(stream_));
                  })
                  .eagerlyEvaluate([](kj::Exception&&) {});
  }
  ~ServeAgentTerminalTest() noexcept override {}
  void TearDown() override {
    link_ = nullptr;
    bridge_ = nullptr;
    server_ = nullptr;
  }

  AgentLink& link() {
    AgentConnectOptions o;
    o.uds_path = socket_.path();
    o.confirm = AgentConnectOptions::Confirm::kNone;
    link_ = connect_agent(io_, o).wait(io_.waitScope);
    EXPECT_EQ(std::string(line_, sizeof(line_)), "CONNECT 1024\n");
    return *link_;
  }

  client::Handler terminal_handler() {
    client::Handler h;
    h.name = "exec";
    h.argv = {"sh"};
    h.terminal = true;
    h.console_width = 100;
    h.console_height = 30;
    return h;
  }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  VsockBridgeSocket socket_{io_};
  AgentRecord record_;
  char line_[13] = {};
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyServer> server_;
  kj::Promise<void> bridge_ = nullptr;
  kj::Own<AgentLink> link_;
};

TEST_F(ServeAgentTerminalTest, AnAgentWithoutTerminalsIsRefusedBeforeAnythingRuns) {
  record_.terminals = false;
  auto started = link().exec_stream(terminal_handler(), 1000, kj::heap<NoOutput>());
  auto result = started.then([](kj::Own<StreamedProcess>) { return std::string("started"); },
                             [](kj::Exception&& e) { return std::string(e.getDescription()); });
  std::string why = result.wait(io_.waitScope);
  EXPECT_EQ(why.rfind("unsupported: terminal: ", 0), 0u) << why;
  EXPECT_NE(why.find("predates terminals"), std::string::npos) << why;
  EXPECT_EQ(record_.exec_streams, 0);
}

TEST_F(ServeAgentTerminalTest, AnAgentWithTerminalsGetsTheTerminalItsSizeAndResizes) {
  record_.terminals = true;
  auto& agent = link();
  auto process =
      agent.exec_stream(terminal_handler(), 1000, kj::heap<NoOutput>()).wait(io_.waitScope);
  EXPECT_EQ(record_.exec_streams, 1);
  EXPECT_TRUE(record_.terminal);
  EXPECT_EQ(record_.size, std::make_pair(100, 30));
  process->resize(132, 43).wait(io_.waitScope);
  ASSERT_EQ(record_.resizes.size(), 1u);
  EXPECT_EQ(record_.resizes[0], std::make_pair(132, 43));
  // Without a terminal no ping is asked first; the handler says no terminal.
  client::Handler plain = terminal_handler();
  plain.terminal = false;
  record_.terminals = false;
  agent.exec_stream(plain, 1000, kj::heap<NoOutput>()).wait(io_.waitScope);
  EXPECT_EQ(record_.exec_streams, 2);
  EXPECT_FALSE(record_.terminal);
}

}  // namespace
}  // namespace wisp::service
