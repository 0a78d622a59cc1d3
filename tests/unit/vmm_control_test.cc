// The manager's control client against a scripted VMM: typed calls go out as the VMM's
// commands, its replies come back as plain structs or Errors carrying its reason.
#include "manager/vmm_control.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "tests/unit/expect_error.h"

namespace wisp::manager {
namespace {

using wisp::testutil::expect_error;

// Listens on a socket in the test's temp dir and answers each command line from `replies`
// ("error ..." for anything else), recording what it was sent. One client.
class FakeVmm {
 public:
  explicit FakeVmm(std::map<std::string, std::string> replies)
      : path_(::testing::TempDir() + "/ctl-" + std::to_string(::getpid()) + ".sock"),
        replies_(std::move(replies)) {
    ::unlink(path_.c_str());
    listen_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listen_.get(), 1), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeVmm() {
    join();
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  // What it was sent, once the client has closed its connection.
  const std::vector<std::string>& received() {
    join();
    return received_;
  }

 private:
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  void serve() {
    UniqueFd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::string pending;
    char buf[256];
    ssize_t n;
    while ((n = ::read(client.get(), buf, sizeof(buf))) > 0) {
      pending.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        received_.push_back(line);
        auto it = replies_.find(line);
        std::string reply = (it == replies_.end() ? "error unknown command" : it->second) + "\n";
        ASSERT_EQ(::write(client.get(), reply.data(), reply.size()),
                  static_cast<ssize_t>(reply.size()));
      }
    }
  }

  std::string path_;
  std::map<std::string, std::string> replies_;
  std::vector<std::string> received_;
  UniqueFd listen_;
  std::thread thread_;
};

TEST(VmmControl, TypedCallsOverOneConnection) {
  FakeVmm vmm(
      {{"ping", "ok"},
       {"pause", "ok"},
       {"resume", "ok"},
       {"stats", "ok {\"resident_pages\":12,\"written_pages\":3,\"pages\":32768}"},
       {"snapshot --diff /s/d",
        "ok {\"pause_ms\":1.250,\"state_ms\":2.000,\"memory_ms\":30.500,"
        "\"total_ms\":34.000,\"memory_file_bytes\":134217728,\"memory_disk_bytes\":"
        "4096,\"pages_written\":1,\"pages_in_layer\":7,\"diff\":true,\"id\":\"ab\\\"c\"}"}});
  {
    VmmControl control = VmmControl::connect(vmm.path());
    control.ping();
    control.pause();
    control.resume();
    VmmStats stats = control.stats();
    EXPECT_EQ(stats.resident_pages, 12u);
    EXPECT_EQ(stats.written_pages, 3u);
    EXPECT_EQ(stats.pages, 32768u);
    SnapshotInfo s = control.snapshot("/s/d", /*diff=*/true);
    EXPECT_EQ(s.id, "ab\"c");
    EXPECT_DOUBLE_EQ(s.pause_ms, 1.25);
    EXPECT_DOUBLE_EQ(s.memory_ms, 30.5);
    EXPECT_DOUBLE_EQ(s.total_ms, 34);
    EXPECT_EQ(s.memory_file_bytes, 134217728u);
    EXPECT_EQ(s.memory_disk_bytes, 4096u);
    EXPECT_EQ(s.pages_in_layer, 7u);
    EXPECT_TRUE(s.diff);
    expect_error([&] { control.snapshot("/s/full", false); }, {"unknown command"});
  }  // closing the connection ends the fake's session
  EXPECT_EQ(vmm.received(), (std::vector<std::string>{"ping", "pause", "resume", "stats",
                                                      "snapshot --diff /s/d", "snapshot /s/full"}));
}

TEST(VmmControl, ErrorsCarryTheVmmReasonOrThePath) {
  {
    FakeVmm vmm(
        {{"snapshot /x", "error snapshot --diff: this VM was booted, not restored"}, {"", ""}});
    VmmControl control = VmmControl::connect(vmm.path());
    expect_error([&] { control.snapshot("/x", false); }, {"this VM was booted"});
  }
  std::string missing = ::testing::TempDir() + "/no-such-vmm.sock";
  expect_error([&] { VmmControl::connect(missing); }, {missing, "--control-socket"});
  expect_error([] { VmmControl::connect(std::string(200, 'x')); }, {"too long"});
}

}  // namespace
}  // namespace wisp::manager
