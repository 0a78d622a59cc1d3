// The base helpers for whole-range positional I/O and Unix socket addresses.
#include "base/file_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace wisp {
namespace {

UniqueFd temp_file() {
  char path[] = "/tmp/wisp-file-io-XXXXXX";
  UniqueFd fd(mkstemp(path));
  ::unlink(path);
  return fd;
}

TEST(PositionalIo, WritesThenReadsARangeAtAnOffset) {
  UniqueFd fd = temp_file();
  ASSERT_TRUE(fd);
  std::vector<uint8_t> in = {1, 2, 3, 4, 5};
  EXPECT_EQ(pwrite_exact(fd.get(), 100, in), 0);
  std::vector<uint8_t> out(5);
  EXPECT_EQ(pread_exact(fd.get(), 100, out), 0);
  EXPECT_EQ(out, in);
}

TEST(PositionalIo, ReadPastTheEndIsEio) {
  UniqueFd fd = temp_file();
  ASSERT_TRUE(fd);
  std::vector<uint8_t> in = {7, 7};
  ASSERT_EQ(pwrite_exact(fd.get(), 0, in), 0);
  std::vector<uint8_t> out(4);
  EXPECT_EQ(pread_exact(fd.get(), 0, out), EIO);
}

TEST(PositionalIo, BadFdReturnsItsErrno) {
  std::vector<uint8_t> buf(1);
  EXPECT_EQ(pread_exact(-1, 0, buf), EBADF);
  EXPECT_EQ(pwrite_exact(-1, 0, buf), EBADF);
}

TEST(UnixAddress, FillsThePathWithItsNul) {
  sockaddr_un addr;
  ASSERT_TRUE(unix_address("/run/x.sock", &addr));
  EXPECT_EQ(addr.sun_family, AF_UNIX);
  EXPECT_STREQ(addr.sun_path, "/run/x.sock");
}

TEST(UnixAddress, RefusesAPathWithNoRoomForItsNul) {
  sockaddr_un addr;
  EXPECT_TRUE(unix_address(std::string(sizeof(addr.sun_path) - 1, 'a'), &addr));
  EXPECT_FALSE(unix_address(std::string(sizeof(addr.sun_path), 'a'), &addr));
}

TEST(CanonicalPath, ResolvesDotsAndSymlinksAndKeepsAMissingName) {
  char dir[] = "/tmp/wisp-canon-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string d(dir);
  ASSERT_EQ(::mkdir((d + "/real").c_str(), 0755), 0);
  ASSERT_EQ(::symlink((d + "/real").c_str(), (d + "/link").c_str()), 0);
  // What the jail mounts a file at must be the path the VMM opens: no "..", no symlink.
  EXPECT_EQ(canonical_path(d + "/link/../real"), d + "/real");
  EXPECT_EQ(canonical_path(d + "/link/new.sock"), d + "/real/new.sock");
  EXPECT_THROW(canonical_path(d + "/missing/new.sock"), Error);
  ::unlink((d + "/link").c_str());
  ::rmdir((d + "/real").c_str());
  ::rmdir(dir);
}

class FileIoDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wisp-file-io-dir-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { remove_tree(root_); }
  std::string path(const std::string& name) const { return root_ + "/" + name; }
  static void touch(const std::string& p) { UniqueFd(::creat(p.c_str(), 0600)); }
  static bool exists(const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0;
  }
  std::string root_;
};

TEST_F(FileIoDirTest, RemoveTreeRemovesSymlinksNotWhatTheyPointAt) {
  ASSERT_EQ(::mkdir(path("keep").c_str(), 0700), 0);
  touch(path("keep/precious"));
  ASSERT_EQ(::mkdir(path("doomed").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(path("doomed/sub").c_str(), 0700), 0);
  touch(path("doomed/sub/file"));
  ASSERT_EQ(::symlink(path("keep").c_str(), path("doomed/sub/to-keep").c_str()), 0);
  ASSERT_EQ(::symlink(path("keep/precious").c_str(), path("doomed/to-file").c_str()), 0);
  ASSERT_EQ(::mkfifo(path("doomed/fifo").c_str(), 0600), 0);
  remove_tree(path("doomed/"));
  EXPECT_FALSE(exists(path("doomed")));
  EXPECT_TRUE(exists(path("keep/precious")));
  // A symlink named as the tree itself: it goes, its target stays.
  ASSERT_EQ(::symlink(path("keep").c_str(), path("link").c_str()), 0);
  remove_tree(path("link"));
  EXPECT_FALSE(exists(path("link")));
  EXPECT_TRUE(exists(path("keep/precious")));
  remove_tree(path("missing"));  // nothing to do
  EXPECT_THROW(remove_tree(path("..")), Error);
}

TEST_F(FileIoDirTest, RenameDirNoReplaceAndItsFallbackNeverReplace) {
  for (NoReplace how : {NoReplace::kAuto, NoReplace::kForceFallback}) {
    ASSERT_EQ(::mkdir(path("new").c_str(), 0700), 0);
    touch(path("new/ours"));
    rename_dir_noreplace(path("new"), path("target"), how);
    EXPECT_TRUE(exists(path("target/ours")));
    EXPECT_FALSE(exists(path("new")));
    ASSERT_EQ(::mkdir(path("new").c_str(), 0700), 0);
    try {
      rename_dir_noreplace(path("new"), path("target"), how);
      ADD_FAILURE() << "replaced an existing directory";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path("target") + " already exists"), std::string::npos)
          << e.what();
    }
    EXPECT_TRUE(exists(path("target/ours")));
    EXPECT_TRUE(exists(path("new")));
    remove_tree(path("new"));
    remove_tree(path("target"));
  }
}

TEST_F(FileIoDirTest, AbandonedWorkDirectoriesAreRemovedAndLockedOnesKept) {
  std::string in_use;
  UniqueFd lock = make_locked_temp_dir(path("work-XXXXXX"), &in_use);
  EXPECT_FALSE(remove_if_unlocked(in_use));
  EXPECT_TRUE(exists(in_use));
  lock.reset();  // its owner went away
  EXPECT_TRUE(remove_if_unlocked(in_use));
  EXPECT_FALSE(exists(in_use));
}

TEST_F(FileIoDirTest, WriteFileAtomicReplacesWholeWithTheMode) {
  write_file_atomic(path("f"), "old", 0600);
  write_file_atomic(path("f"), "new contents", 0600);
  EXPECT_EQ(read_file(path("f")), "new contents");
  struct stat st;
  ASSERT_EQ(::stat(path("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(exists(path("f.tmp-" + std::to_string(::getpid()))));
}

}  // namespace
}  // namespace wisp
