// The scratch space's path checks and its no-symlink, beneath-the-root file access
// (agent/scratch_files.h), on a temporary directory of the host.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/exception.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <string>

#include "agent/scratch_files.h"

namespace wisp::agent {
namespace {

// Runs `fn`, expects a kj::Exception whose description contains `part`.
template <typename Fn>
void expect_refused(Fn fn, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "not refused; expected: " << part;
  } catch (const kj::Exception& e) {
    std::string msg = e.getDescription().cStr();
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  }
}

kj::ArrayPtr<const kj::byte> bytes(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

TEST(ScratchPath, SplitsARelativePath) {
  EXPECT_EQ(split_scratch_path("a"), (std::vector<std::string>{"a"}));
  EXPECT_EQ(split_scratch_path("dir/sub/f.txt"), (std::vector<std::string>{"dir", "sub", "f.txt"}));
  EXPECT_EQ(split_scratch_path("..x/.y"), (std::vector<std::string>{"..x", ".y"}));
}

TEST(ScratchPath, RefusesWhatCouldLeaveTheScratchSpace) {
  expect_refused([] { split_scratch_path(""); }, "empty");
  expect_refused([] { split_scratch_path("/etc/passwd"); }, "absolute");
  expect_refused([] { split_scratch_path("../x"); }, "\"..\"");
  expect_refused([] { split_scratch_path("a/../../x"); }, "\"..\"");
  expect_refused([] { split_scratch_path("a/.."); }, "\"..\"");
  expect_refused([] { split_scratch_path("./a"); }, "\".\"");
  expect_refused([] { split_scratch_path("a//b"); }, "empty component");
  expect_refused([] { split_scratch_path("a/"); }, "empty component");
  expect_refused([] { split_scratch_path(std::string_view("a\0b", 3)); }, "NUL");
  expect_refused([] { split_scratch_path(std::string(kMaxScratchPathBytes + 1, 'a')); },
                 "too long");
  expect_refused([] { split_scratch_path(std::string(kMaxScratchNameBytes + 1, 'a')); },
                 "component is too long");
}

class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char base[] = "/tmp/wisp-scratch-test-XXXXXX";
    ASSERT_NE(mkdtemp(base), nullptr);
    base_ = base;
    root_ = base_ + "/scratch";
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    outside_ = base_ + "/outside";
    std::ofstream(outside_) << "secret";
    int fd = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    dir_.emplace(kj::AutoCloseFd(fd), uid_t(-1), gid_t(-1), kMaxBytes);
  }
  void TearDown() override { (void)!system(("rm -rf " + base_).c_str()); }

  static constexpr uint64_t kMaxBytes = 1024;
  std::string base_, root_, outside_;
  std::optional<ScratchDir> dir_;
};

TEST_F(ScratchDirTest, PutThenGetRoundTripsAndCreatesParents) {
  dir_->put("a/b/c.txt", bytes("hello"), 0);
  EXPECT_EQ(dir_->get("a/b/c.txt"), "hello");
  struct stat st;
  ASSERT_EQ(stat((root_ + "/a/b/c.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);  // 0: the default mode
  dir_->put("a/b/c.txt", bytes("replaced"), 0755);
  EXPECT_EQ(dir_->get("a/b/c.txt"), "replaced");
  ASSERT_EQ(stat((root_ + "/a/b/c.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  dir_->put("empty", bytes(""), 0600);
  EXPECT_EQ(dir_->get("empty"), "");
}

TEST_F(ScratchDirTest, ModeIsMaskedToPermissionBits) {
  dir_->put("f", bytes("x"), 04777 | 02000 | 01000);
  struct stat st;
  ASSERT_EQ(stat((root_ + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777u);
}

TEST_F(ScratchDirTest, SymlinksAreNotFollowed) {
  ASSERT_EQ(symlink(outside_.c_str(), (root_ + "/link").c_str()), 0);
  ASSERT_EQ(symlink(base_.c_str(), (root_ + "/dirlink").c_str()), 0);
  expect_refused([&] { dir_->get("link"); }, "symlink");
  expect_refused([&] { dir_->get("dirlink/outside"); }, "symlink");
  expect_refused([&] { dir_->put("dirlink/planted", bytes("x"), 0); }, "symlink");
  // Replacing a symlink replaces the link itself, never writes through it.
  dir_->put("link", bytes("new"), 0);
  std::ifstream f(outside_);
  std::string content((std::istreambuf_iterator<char>(f)), {});
  EXPECT_EQ(content, "secret");
  EXPECT_EQ(dir_->get("link"), "new");
}

TEST_F(ScratchDirTest, SizeCapHoldsBothWays) {
  expect_refused([&] { dir_->put("big", bytes(std::string(kMaxBytes + 1, 'x')), 0); },
                 "over the size cap");
  dir_->put("max", bytes(std::string(kMaxBytes, 'x')), 0);
  EXPECT_EQ(dir_->get("max").size(), kMaxBytes);
  std::ofstream(root_ + "/grown") << std::string(kMaxBytes + 1, 'y');
  expect_refused([&] { dir_->get("grown"); }, "over the size cap");
}

TEST_F(ScratchDirTest, MissingDirectoriesAndSpecialFilesAreRefused) {
  expect_refused([&] { dir_->get("nothing"); }, "no such file");
  ASSERT_EQ(mkdir((root_ + "/d").c_str(), 0755), 0);
  expect_refused([&] { dir_->get("d"); }, "not a regular file");
  expect_refused([&] { dir_->put("d", bytes("x"), 0); }, "directory");
  ASSERT_EQ(mkfifo((root_ + "/fifo").c_str(), 0644), 0);
  expect_refused([&] { dir_->get("fifo"); }, "not a regular file");  // and did not block
  dir_->put("plain", bytes("x"), 0);
  expect_refused([&] { dir_->get("plain/below"); }, "not a directory");
}

}  // namespace
}  // namespace wisp::agent
