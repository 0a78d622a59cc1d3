#include "vmm/machine/control_socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "vmm/event/event_loop.h"

namespace wisp {
namespace {

// The test's handler: upper-cases the line; "throw ..." throws, "multi" answers two lines.
std::string handle(const std::string& line) {
  if (line.rfind("throw", 0) == 0) throw Error("boom" + line.substr(5));
  if (line == "multi") return "first\nsecond";
  std::string out = line;
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// A blocking client with a receive timeout, so a missing reply fails the test instead of
// hanging it.
class Client {
 public:
  explicit Client(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (!fd_) throw_errno("socket");
    timeval tv{5, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw_errno("connect " + path);
  }

  void send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) throw_errno("send");
      done += static_cast<size_t>(n);
    }
  }

  // The next line without its newline; "<eof>" when the server closed the connection.
  std::string line() {
    for (;;) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string out = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return out;
      }
      char buf[4096];
      ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      // A server that closes with our bytes unread resets the connection: closed all the same.
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return buffer_.empty() ? "<eof>" : "<partial>";
      if (n < 0) return "<" + std::string(std::strerror(errno)) + ">";
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  UniqueFd fd_;
  std::string buffer_;
};

class ControlSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "wisp-ctl-" + std::to_string(getpid()) + ".sock";
    socket_ = std::make_unique<ControlSocket>(path_, loop_, handle);
    thread_ = std::thread([this] { loop_.run(); });
  }
  void TearDown() override {
    loop_.stop();
    thread_.join();
    socket_.reset();
    struct stat st;
    EXPECT_NE(::lstat(path_.c_str(), &st), 0) << "the socket file is removed";
  }

  std::string path_;
  EventLoop loop_;
  std::unique_ptr<ControlSocket> socket_;
  std::thread thread_;
};

TEST_F(ControlSocketTest, AnswersEachLineOfOneWriteInOrder) {
  Client c(path_);
  c.send("hello\nworld\r\n\nx y\n");
  EXPECT_EQ(c.line(), "HELLO");
  EXPECT_EQ(c.line(), "WORLD");  // a CR before the newline is dropped
  EXPECT_EQ(c.line(), "");
  EXPECT_EQ(c.line(), "X Y");
}

TEST_F(ControlSocketTest, JoinsALineSplitAcrossWrites) {
  Client c(path_);
  for (const char* part : {"he", "llo\nwo", "r", "ld\nlast"}) {
    c.send(part);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(c.line(), "HELLO");
  EXPECT_EQ(c.line(), "WORLD");
  c.send("\n");
  EXPECT_EQ(c.line(), "LAST");
}

TEST_F(ControlSocketTest, ALineOfTheLimitIsAccepted) {
  Client c(path_);
  c.send(std::string(ControlSocket::kMaxLineBytes, 'a') + "\n");
  EXPECT_EQ(c.line(), std::string(ControlSocket::kMaxLineBytes, 'A'));
}

TEST_F(ControlSocketTest, AnOverlongLineGetsAnErrorAndTheConnectionCloses) {
  Client c(path_);
  c.send(std::string(ControlSocket::kMaxLineBytes + 100, 'a'));
  EXPECT_EQ(c.line(), "error command longer than 4096 bytes");
  EXPECT_EQ(c.line(), "<eof>");
  Client next(path_);  // the server goes on
  next.send("ok\n");
  EXPECT_EQ(next.line(), "OK");
}

TEST_F(ControlSocketTest, AnOverlongLineIsRefusedEvenWithItsNewline) {
  Client c(path_);
  c.send(std::string(ControlSocket::kMaxLineBytes + 1, 'a') + "\nafter\n");
  EXPECT_EQ(c.line(), "error command longer than 4096 bytes");
  EXPECT_EQ(c.line(), "<eof>");
}

TEST_F(ControlSocketTest, AThrowingHandlerGivesAnErrorReply) {
  Client c(path_);
  c.send("throw up\nnext\n");
  EXPECT_EQ(c.line(), "error boom up");
  EXPECT_EQ(c.line(), "NEXT");  // the connection stays usable
}

TEST_F(ControlSocketTest, ANewlineInAReplyIsFlattened) {
  Client c(path_);
  c.send("multi\nafter\n");
  EXPECT_EQ(c.line(), "first second");
  EXPECT_EQ(c.line(), "AFTER");
}

TEST_F(ControlSocketTest, RefusesClientsBeyondTheLimit) {
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t i = 0; i < ControlSocket::kMaxClients; ++i) {
    clients.push_back(std::make_unique<Client>(path_));
    clients.back()->send("c" + std::to_string(i) + "\n");
    EXPECT_EQ(clients.back()->line(), "C" + std::to_string(i));  // accepted
  }
  Client extra(path_);
  EXPECT_EQ(extra.line(), "error too many control clients");
  EXPECT_EQ(extra.line(), "<eof>");
  clients[0]->send("still\n");
  EXPECT_EQ(clients[0]->line(), "STILL");

  // A client that leaves frees its place (once the server has seen it go).
  clients.erase(clients.begin());
  std::string reply;
  for (int attempt = 0; attempt < 100 && reply != "IN"; ++attempt) {
    Client again(path_);
    again.send("in\n");
    reply = again.line();
    if (reply != "IN") std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(reply, "IN");
}

TEST(ControlSocket, RefusesABadPath) {
  EventLoop loop;
  auto make = [&](const std::string& path) { ControlSocket s(path, loop, handle); };
  EXPECT_THROW(make(""), Error);
  EXPECT_THROW(make("/tmp/" + std::string(200, 's')), Error);
  EXPECT_THROW(make("/nonexistent-dir/ctl.sock"), Error);
}

TEST(ControlSocket, ReplacesAStaleSocketButNotAFile) {
  EventLoop loop;
  std::string path = ::testing::TempDir() + "wisp-ctl-stale-" + std::to_string(getpid());
  { ControlSocket first(path, loop, handle); }
  {
    // A socket left behind (e.g. by a VMM that was killed) is replaced.
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_NO_THROW(ControlSocket(path, loop, handle));
  }
  std::ofstream(path) << "precious";
  EXPECT_THROW(ControlSocket(path, loop, handle), Error);
  std::ifstream in(path);
  std::string kept;
  in >> kept;
  EXPECT_EQ(kept, "precious");
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace wisp
