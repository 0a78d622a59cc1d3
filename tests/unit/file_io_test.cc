// The base helpers for whole-range positional I/O and Unix socket addresses.
#include "base/file_io.h"

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

}  // namespace
}  // namespace wisp
