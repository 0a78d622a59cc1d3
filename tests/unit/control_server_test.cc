// The VMM's control channel end to end without a VM: a ControlServer over a fake Service, on
// an EventLoop running in its own thread, driven by the manager's VmmClient.
#include "vmm/control/control_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "api/vmm_client.h"
#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "tests/unit/expect_error.h"
#include "vmm/event/event_loop.h"

namespace wisp {
namespace {

using testutil::expect_error;

// Records what it was asked, on which thread; "fail" as a snapshot dir makes it throw. A
// snapshot writes a line into each of the two files, as a VMM writes its state and memory.
class FakeService final : public control::Service {
 public:
  void pause() override {
    note();
    ++pauses;
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
    return {7, 3, 1024};
  }

  std::atomic<int> pauses{0}, resumes{0}, snapshots{0};
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
    server_ = std::make_unique<ControlServer>(path_, loop_, service_);
    server_->start();
    loop_thread_ = std::thread([this] { loop_.run(); });
    service_.loop_thread = loop_thread_.get_id();
  }

  std::filesystem::path dir_;
  std::string path_;
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
  EXPECT_EQ(service_.pauses, 2);
  EXPECT_EQ(service_.resumes, 1);
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

TEST_F(ControlServerTest, RefusesAPathThatIsNotASocket) {
  std::filesystem::create_directories(path_);
  expect_error([&] { ControlServer s(path_, loop_, service_); }, {"--control-socket", path_});
  EXPECT_TRUE(std::filesystem::is_directory(path_));
}

TEST_F(ControlServerTest, ClientNamesAMissingSocket) {
  expect_error([&] { client::VmmClient::connect(path_); }, {"control socket", path_});
}

}  // namespace
}  // namespace wisp
