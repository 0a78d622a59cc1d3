// Runtime directories whose process died are removed by the next RuntimeDir made beside them;
// live ones and anything not made by RuntimeDir are left alone.
#include "manager/runtime_sweep.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

#include "base/file_io.h"
#include "manager/runtime_dir.h"
#include "tests/unit/scoped_env.h"

namespace wisp::manager {
namespace {

namespace fs = std::filesystem;

class RuntimeSweepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("wisp-sweep-test-" + std::to_string(::getpid()));
    fs::create_directories(base_);
    env_.emplace("TMPDIR", base_.c_str());
  }
  void TearDown() override {
    env_.reset();
    fs::remove_all(base_);
  }
  // A runtime directory made by a child process that then dies without cleaning up, as a
  // SIGKILLed `wisp invoke` does.
  std::string left_by_dead_process() {
    int p[2];
    EXPECT_EQ(::pipe(p), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(p[0]);
      auto* dir = new RuntimeDir("wisp-dead");  // never destroyed
      write_all(p[1], dir->path());
      _exit(0);
    }
    ::close(p[1]);
    std::string path = read_all_fd(p[0]);
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return path;
  }

  fs::path base_;
  std::optional<testutil::ScopedEnv> env_;
};

TEST_F(RuntimeSweepTest, ADeadOwnersDirectoryGoesAtTheNextUse) {
  std::string dead = left_by_dead_process();
  ASSERT_FALSE(dead.empty());
  ASSERT_TRUE(fs::is_directory(dead));
  fs::create_directory(fs::path(dead) / "root");  // what a jail leaves in it
  RuntimeDir next("wisp-next");
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::is_directory(next.path()));
  EXPECT_EQ(fs::path(next.path()).parent_path(), base_);
  EXPECT_EQ(fs::path(next.path()).filename().string().rfind("wisp-next-", 0), 0u);
}

TEST_F(RuntimeSweepTest, LiveAndForeignDirectoriesStay) {
  RuntimeDir live("wisp-live");
  fs::create_directory(base_ / "wisp-foreign");  // not a RuntimeDir: no marker
  RuntimeDir next("wisp-next");
  EXPECT_TRUE(fs::is_directory(live.path()));
  EXPECT_TRUE(fs::is_directory(base_ / "wisp-foreign"));
  struct stat st;
  ASSERT_EQ(::stat(live.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

}  // namespace
}  // namespace wisp::manager
