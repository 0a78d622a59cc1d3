// The base helpers for whole-range positional I/O and Unix socket addresses.
#include "base/file_io.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

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

}  // namespace
}  // namespace wisp
