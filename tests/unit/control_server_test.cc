// The VMM's control channel end to end without a VM: a ControlServer over a fake Service, on
// an EventLoop running in its own thread, driven by the manager's VmmClient.
#include "vmm/control/control_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "api/vmm_client.h"
#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"
#include "tests/unit/expect_error.h"
#include "vmm/event/event_loop.h"

namespace wisp {
namespace {

using testutil::expect_error;

// Records what it was asked, on which thread; "fail" as a snapshot dir makes it throw. A
// snapshot writes a line into each of the two files, as a VMM writes its state and memory.
class FakeService final : public control::Service {
 public:
  void pause(bool hold_clock) override {
    note();
    ++pauses;
    if (hold_clock) ++clock_holds;
  }
  void resume() override {
    note();
    ++resumes;
  }
  control::SnapshotReport snapshot(const control::SnapshotRequest& r) override {
    note();
    ++snapshots;
    state_fd = r.state_fd;
    memory_fd = r.memory_fd;
    if (r.dir == "/fail") throw Error("snapshot /fail: disk full");
    if (!write_all(r.state_fd, "state of " + r.dir) || !write_all(r.memory_fd, "memory"))
      throw Error("fake snapshot: write failed");
    control::SnapshotReport out;
    out.id = "id-" + r.dir;
    out.diff = r.diff;
    out.total_ms = 1.5;
    out.pages_written = 42;
    return out;
  }
  control::MemoryStats stats() override {
    note();
    return {7, 3, 1024, {true, 900, 410, 400, 5, 60, 2}};
  }
  std::vector<std::pair<uint64_t, uint64_t>> resident_ranges() override {
    note();
    return {{0, 3}, {100, 4}};
  }
  std::vector<std::pair<uint64_t, uint64_t>> written_ranges() override {
    note();
    return {{100, 2}};
  }
  uint64_t populate_writable(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) override {
    note();
    populated = ranges;
    if (ranges.size() == 1 && ranges[0].first > 1000) throw Error("populateWritable: outside");
    return 5;
  }
  std::vector<std::pair<uint64_t, uint64_t>> populated;  // the last populate_writable's

  std::atomic<int> pauses{0}, resumes{0}, snapshots{0}, clock_holds{0};
  int state_fd = -1, memory_fd = -1;  // what the last snapshot got
  std::atomic<bool> off_loop_thread{false};
  std::thread::id loop_thread;

 private:
  void note() {
    if (std::this_thread::get_id() != loop_thread) off_loop_thread = true;
  }
};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("wisp-control-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "control.sock").string();
  }
  void TearDown() override {
    server_.reset();
    if (loop_thread_.joinable()) {
      loop_.stop();
      loop_thread_.join();
    }
    std::filesystem::remove_all(dir_);
  }
  // A new file in the test directory opened with `flags`, like the manager's.
  UniqueFd file(const std::string& name, int flags = O_WRONLY) {
    std::string path = (dir_ / name).string();
    UniqueFd fd(::open(path.c_str(), flags | O_CREAT | O_CLOEXEC, 0600));
    EXPECT_TRUE(fd) << path;
    return fd;
  }
  std::string contents(const std::string& name) { return read_file((dir_ / name).string()); }

  void start() {
    server_ = std::make_unique<ControlServer>(path_, loop_, service_, owner_);
    server_->start();
    loop_thread_ = std::thread([this] { loop_.run(); });
    service_.loop_thread = loop_thread_.get_id();
  }

  std::filesystem::path dir_;
  std::string path_;
  uid_t owner_ = ::getuid();
  EventLoop loop_;
  FakeService service_;
  std::unique_ptr<ControlServer> server_;
  std::thread loop_thread_;
};

TEST_F(ControlServerTest, CallsRunOnTheEventLoopThread) {
  start();
  auto client = client::VmmClient::connect(path_);
  client->ping();
  client->pause();
  client->pause();
  client->resume();
  client->pause_holding_clock();  // the holdClock flag reaches the service
  client->resume();
  UniqueFd state = file("state"), memory = file("memory");
  control::SnapshotReport r = client->snapshot({"/snap", true, state.get(), memory.get()});
  // The service wrote through copies of the descriptors that crossed the socket.
  EXPECT_EQ(contents("state"), "state of /snap");
  EXPECT_EQ(contents("memory"), "memory");
  EXPECT_NE(service_.state_fd, state.get());
  EXPECT_NE(service_.memory_fd, memory.get());
  EXPECT_EQ(r.id, "id-/snap");
  EXPECT_TRUE(r.diff);
  EXPECT_EQ(r.total_ms, 1.5);
  EXPECT_EQ(r.pages_written, 42u);
  control::MemoryStats s = client->stats();
  EXPECT_EQ(s.resident_pages, 7u);
  EXPECT_EQ(s.written_pages, 3u);
  EXPECT_EQ(s.pages, 1024u);
  EXPECT_TRUE(s.vcpu.available);
  EXPECT_EQ(s.vcpu.exits, 900u);
  EXPECT_EQ(s.vcpu.nested_page_faults, 410u);
  EXPECT_EQ(s.vcpu.pages_mapped, 400u);
  EXPECT_EQ(s.vcpu.halt_exits, 5u);
  EXPECT_EQ(s.vcpu.mmio_exits, 60u);
  EXPECT_EQ(s.vcpu.io_exits, 2u);
  std::vector<std::pair<uint64_t, uint64_t>> ranges = {{0, 3}, {100, 4}};
  EXPECT_EQ(client->resident_ranges(), ranges);
  std::vector<std::pair<uint64_t, uint64_t>> written = {{100, 2}};
  EXPECT_EQ(client->written_ranges(), written);
  std::vector<std::pair<uint64_t, uint64_t>> populate = {{1, 2}, {8, 3}};
  EXPECT_EQ(client->populate_writable(populate), 5u);
  EXPECT_EQ(service_.populated, populate);
  try {
    client->populate_writable({{5000, 1}});
    ADD_FAILURE() << "a refused populateWritable did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside"), std::string::npos) << e.what();
  }
  EXPECT_EQ(service_.pauses, 3);
  EXPECT_EQ(service_.clock_holds, 1);
  EXPECT_EQ(service_.resumes, 2);
  EXPECT_FALSE(service_.off_loop_thread);
}

TEST_F(ControlServerTest, ServiceErrorsReachTheClientAndTheVmKeepsServing) {
  start();
  auto client = client::VmmClient::connect(path_);
  UniqueFd state = file("state"), memory = file("memory");
  expect_error(
      [&] {
        client->snapshot({"/fail", false, state.get(), memory.get()});
      },
      {"snapshot", "disk full"});
  client->ping();
}

TEST_F(ControlServerTest, RefusesFilesASnapshotCannotBeWrittenInto) {
  start();
  auto client = client::VmmClient::connect(path_);
  UniqueFd state = file("state"), memory = file("memory");
  UniqueFd directory(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd read_only = file("read-only", O_RDONLY);
  UniqueFd append = file("append", O_WRONLY | O_APPEND);
  UniqueFd full = file("full");
  ASSERT_TRUE(write_all(full.get(), "old"));
  auto snapshot = [&](int s, int m) { client->snapshot({"/snap", false, s, m}); };
  expect_error([&] { snapshot(-1, memory.get()); },
               {"snapshot", "/snap", "the state file came without a file descriptor"});
  expect_error([&] { snapshot(state.get(), -1); },
               {"the memory file came without a file descriptor"});
  expect_error([&] { snapshot(directory.get(), memory.get()); },
               {"/snap", "the state file is not a regular file (a directory)"});
  expect_error([&] { snapshot(state.get(), read_only.get()); },
               {"/snap", "the memory file is not open for writing"});
  expect_error([&] { snapshot(append.get(), memory.get()); },
               {"the state file is open for appending"});
  expect_error([&] { snapshot(state.get(), full.get()); },
               {"the memory file is not empty (3 bytes)"});
  EXPECT_EQ(service_.snapshots, 0);
  client->ping();
  EXPECT_EQ(contents("state"), "");
}

TEST_F(ControlServerTest, SocketIsOwnerOnlyAndRemovedAfterwards) {
  start();
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  server_.reset();
  EXPECT_NE(::stat(path_.c_str(), &st), 0);
}

TEST_F(ControlServerTest, CallsFailOnceTheLoopHasStopped) {
  start();
  auto client = client::VmmClient::connect(path_);
  client->ping();
  loop_.stop();
  loop_thread_.join();
  expect_error([&] { client->pause(); }, {"pause", "the VM is stopping"});
  EXPECT_EQ(service_.pauses, 0);
}

TEST_F(ControlServerTest, ManyClientsInTurn) {
  start();
  for (int i = 0; i < 3 * static_cast<int>(ControlServer::kMaxClients); ++i)
    client::VmmClient::connect(path_)->ping();
}

// Waits until `pred` holds (the RPC thread notices a closed connection on its own time).
bool eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 500 && !pred(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return pred();
}

TEST_F(ControlServerTest, APauseEndsWhenItsConnectionCloses) {
  start();
  {
    auto client = client::VmmClient::connect(path_);
    client->pause();
    EXPECT_EQ(service_.resumes, 0);
  }
  EXPECT_TRUE(eventually([&] { return service_.resumes == 1; }));
  // A pause ended by resume() is not ended again by its connection's close.
  {
    auto client = client::VmmClient::connect(path_);
    client->pause();
    client->resume();
  }
  client::VmmClient::connect(path_)->ping();
  EXPECT_EQ(service_.resumes, 2);
  EXPECT_FALSE(service_.off_loop_thread);
}

TEST_F(ControlServerTest, ALastingPauseOutlivesItsConnection) {
  start();
  client::VmmClient::connect(path_)->pause_lasting();
  auto other = client::VmmClient::connect(path_);
  other->pause();
  other.reset();  // its own pause goes, the lasting one stays
  client::VmmClient::connect(path_)->ping();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(service_.pauses, 2);
  EXPECT_EQ(service_.resumes, 0);
  client::VmmClient::connect(path_)->resume();
  EXPECT_EQ(service_.resumes, 1);
}

TEST_F(ControlServerTest, APauseHeldByTwoConnectionsEndsWithTheLast) {
  start();
  auto a = client::VmmClient::connect(path_);
  auto b = client::VmmClient::connect(path_);
  a->pause();
  b->pause();
  a.reset();
  b->ping();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(service_.resumes, 0);
  b.reset();
  EXPECT_TRUE(eventually([&] { return service_.resumes == 1; }));
}

// A socket file whose listener is gone (a VMM that died without removing it).
void leave_stale_socket(const std::string& path) {
  sockaddr_un addr;
  ASSERT_TRUE(unix_address(path, &addr));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd.get(), 1), 0);
}

TEST_F(ControlServerTest, ReplacesAStaleSocketOnly) {
  leave_stale_socket(path_);
  start();
  client::VmmClient::connect(path_)->ping();
  // A second server on the same path finds a live socket: an error, and the first serves on.
  EventLoop other_loop;
  FakeService other_service;
  expect_error([&] { ControlServer s(path_, other_loop, other_service, owner_); },
               {"--control-socket", path_, "a live socket is there"});
  client::VmmClient::connect(path_)->ping();
}

// Connects to `path` from a child process running as `uid`: true when the server kept the
// connection (no end of file within 300 ms), false when it closed it.
bool kept_connection_as(const std::string& path, uid_t uid) {
  sockaddr_un addr;
  if (!unix_address(path, &addr)) return false;
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only system calls here: the parent has threads.
    if (::syscall(SYS_setresuid, uid, uid, uid) != 0) _exit(3);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) _exit(4);
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 300) == 0) _exit(0);
    char c;
    _exit(::read(fd, &c, 1) == 0 ? 1 : 5);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) <= 1) << "child status " << status;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST_F(ControlServerTest, AcceptsOnlyTheOwnerAndRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as other uids";
  owner_ = 65534;
  start();
  // As if the socket's mode did not keep others out: the peer check still does.
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  EXPECT_TRUE(kept_connection_as(path_, 65534));
  EXPECT_FALSE(kept_connection_as(path_, 65533));
  client::VmmClient::connect(path_)->ping();  // root
}

TEST_F(ControlServerTest, RefusesAPathThatIsNotASocket) {
  std::filesystem::create_directories(path_);
  expect_error([&] { ControlServer s(path_, loop_, service_, owner_); },
               {"--control-socket", path_});
  EXPECT_TRUE(std::filesystem::is_directory(path_));
}

TEST_F(ControlServerTest, ClientNamesAMissingSocket) {
  expect_error([&] { client::VmmClient::connect(path_); }, {"control socket", path_});
}

}  // namespace
}  // namespace wisp
