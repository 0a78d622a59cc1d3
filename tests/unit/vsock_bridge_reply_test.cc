// The VMM vsock bridge's reply line ("OK <port>\n") as both clients read it: serve's
// UnansweredStream (api/vsock_bridge_stream.h) and the blocking vsock_uds_connect
// (api/agent_client.h). They read the line in chunks, not byte by byte, so the guest's first
// bytes can arrive in the same read: those must reach the caller intact, and a reply that is
// not "OK" or runs on too long must still fail.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>
#include <thread>

#include "api/agent_client.h"
#include "api/vsock_bridge_stream.h"
#include "tests/unit/vsock_bridge_socket.h"

namespace wisp::service {
namespace {

class VsockBridgeReplyTest : public ::testing::Test {
 protected:
  ~VsockBridgeReplyTest() noexcept override {}

  // Connects through the bridge socket and plays the bridge: reads the CONNECT line, then
  // writes `pieces` one write each. Returns what the stream then reads (up to `want` bytes).
  std::string read_through_stream(std::vector<std::string> pieces, size_t want) {
    auto bridge = socket_.listener().accept().then([&](kj::Own<kj::AsyncIoStream> s) {
      auto& stream = *s;
      return stream.read(line_, sizeof(line_) - 1)
          .then([&stream, pieces = std::move(pieces)]() mutable {
            kj::Promise<void> done = kj::READY_NOW;
            for (std::string& p : pieces) {
              auto text = kj::heapString(p.data(), p.size());
              done = done.then([&stream, text = kj::mv(text)]() mutable {
                return stream.write(text.begin(), text.size()).attach(kj::mv(text));
              });
            }
            return done;
          })
          .attach(kj::mv(s));
    });
    auto stream = client::bridge_connect_unanswered(io_, socket_.path(), 1024).wait(io_.waitScope);
    bridge.wait(io_.waitScope);
    std::string out(want, '\0');
    size_t n = stream->tryRead(out.data(), want, want).wait(io_.waitScope);
    out.resize(n);
    return out;
  }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  VsockBridgeSocket socket_{io_};
  char line_[sizeof("CONNECT 1024\n")] = {};
};

TEST_F(VsockBridgeReplyTest, GuestBytesReadWithTheReplyReachTheStream) {
  EXPECT_EQ(read_through_stream({"OK 1073741824\nguest-bytes"}, 11), "guest-bytes");
  EXPECT_STREQ(line_, "CONNECT 1024\n");
}

TEST_F(VsockBridgeReplyTest, AReplySplitAcrossWritesIsPutTogether) {
  EXPECT_EQ(read_through_stream({"O", "K 7", "\nab", "cd"}, 4), "abcd");
}

TEST_F(VsockBridgeReplyTest, AShortReadTakesTheKeptBytesThenTheSocket) {
  // min_bytes beyond what came with the reply: the rest is read from the socket.
  EXPECT_EQ(read_through_stream({"OK 1\nxy", "z"}, 3), "xyz");
}

TEST_F(VsockBridgeReplyTest, ARefusalFails) { EXPECT_ANY_THROW(read_through_stream({"NO\n"}, 1)); }

TEST_F(VsockBridgeReplyTest, AReplyThatRunsOnFails) {
  EXPECT_ANY_THROW(read_through_stream({std::string(40, 'O') + "\n"}, 1));
}

// The blocking client: the fd it returns starts at the guest's first byte.
TEST_F(VsockBridgeReplyTest, BlockingConnectLeavesTheGuestBytesOnTheSocket) {
  std::string why;
  int fd = -1;
  std::thread client([&] {
    fd = client::vsock_uds_connect(socket_.path(), 1024, std::chrono::milliseconds(5000), &why);
  });
  auto s = socket_.listener().accept().wait(io_.waitScope);
  s->read(line_, sizeof(line_) - 1).wait(io_.waitScope);
  const std::string reply = "OK 9\nguest";
  s->write(reply.data(), reply.size()).wait(io_.waitScope);
  client.join();
  ASSERT_GE(fd, 0) << why;
  char buf[16] = {};
  EXPECT_EQ(::recv(fd, buf, sizeof(buf), 0), 5);
  EXPECT_STREQ(buf, "guest");
  ::close(fd);
}

}  // namespace
}  // namespace wisp::service
