// agent/sandbox_terminal: the pty pair of a streamed command on a terminal, from a devpts
// instance of its own (a detached mount; no mount namespace is touched here). Needs
// CAP_SYS_ADMIN for fsopen("devpts"): skipped without it.
#include <errno.h>
#include <gtest/gtest.h>
#include <kj/exception.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <string>

#include "agent/sandbox_terminal.h"

namespace wisp::agent {
namespace {

bool can_mount_devpts() {
  int fs = fsopen("devpts", FSOPEN_CLOEXEC);
  if (fs < 0) return false;
  close(fs);
  return true;
}

// What `fd` has to read within 2 s (until it has `want` bytes or nothing more comes).
std::string read_some(int fd, size_t want) {
  std::string out;
  char buf[256];
  while (out.size() < want) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0) break;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

class SandboxTerminalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!can_mount_devpts()) GTEST_SKIP() << "fsopen(devpts) needs CAP_SYS_ADMIN";
  }
};

TEST_F(SandboxTerminalTest, ThePtyIsTheUsersAndHasTheInitialSize) {
  TerminalPair t = open_terminal(1234, 5678, 100, 30);
  ASSERT_GE(t.devpts.get(), 0);
  ASSERT_GE(t.master.get(), 0);
  ASSERT_GE(t.pty.get(), 0);
  EXPECT_TRUE(isatty(t.pty.get()));
  struct stat st;
  ASSERT_EQ(fstat(t.pty.get(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_mode & 07777, 0620u);
  // Its own instance: the first pty of it.
  int n = -1;
  ASSERT_EQ(ioctl(t.master.get(), TIOCGPTN, &n), 0);
  EXPECT_EQ(n, 0);
  winsize ws{};
  ASSERT_EQ(ioctl(t.pty.get(), TIOCGWINSZ, &ws), 0);
  EXPECT_EQ(ws.ws_col, 100);
  EXPECT_EQ(ws.ws_row, 30);
}

TEST_F(SandboxTerminalTest, ZeroSizeKeepsTheDefaultAndResizeSetsIt) {
  TerminalPair t = open_terminal(0, 0, 0, 0);
  winsize ws{};
  ASSERT_EQ(ioctl(t.pty.get(), TIOCGWINSZ, &ws), 0);
  EXPECT_EQ(ws.ws_col, 0);
  EXPECT_EQ(ws.ws_row, 0);
  resize_terminal(t.master.get(), 132, 43);
  ASSERT_EQ(ioctl(t.pty.get(), TIOCGWINSZ, &ws), 0);
  EXPECT_EQ(ws.ws_col, 132);
  EXPECT_EQ(ws.ws_row, 43);
}

TEST_F(SandboxTerminalTest, OutputInputAndTheEndOfFileCharacter) {
  TerminalPair t = open_terminal(0, 0, 80, 24);
  // Output: the line discipline turns "\n" into "\r\n" (ONLCR).
  ASSERT_EQ(write(t.pty.get(), "hi\n", 3), 3);
  EXPECT_EQ(read_some(t.master.get(), 4), "hi\r\n");
  // Input typed into the master is a line for the pty (and echoed back).
  ASSERT_EQ(write(t.master.get(), "abc\n", 4), 4);
  EXPECT_EQ(read_some(t.pty.get(), 4), "abc\n");
  EXPECT_EQ(read_some(t.master.get(), 5), "abc\r\n");
  // VEOF on an empty line: the pty's read returns 0 (end of file), the terminal stays usable.
  int eof = terminal_eof_char(t.master.get());
  EXPECT_EQ(eof, 4);  // ^D
  char c = static_cast<char>(eof);
  ASSERT_EQ(write(t.master.get(), &c, 1), 1);
  pollfd p{t.pty.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1);
  char buf[8];
  EXPECT_EQ(read(t.pty.get(), buf, sizeof(buf)), 0);
  // A changed VEOF is what is answered; disabled: -1.
  termios tio;
  ASSERT_EQ(tcgetattr(t.pty.get(), &tio), 0);
  tio.c_cc[VEOF] = 'q' & 0x1f;
  ASSERT_EQ(tcsetattr(t.pty.get(), TCSANOW, &tio), 0);
  EXPECT_EQ(terminal_eof_char(t.master.get()), 'q' & 0x1f);
  tio.c_cc[VEOF] = _POSIX_VDISABLE;
  ASSERT_EQ(tcsetattr(t.pty.get(), TCSANOW, &tio), 0);
  EXPECT_EQ(terminal_eof_char(t.master.get()), -1);
}

TEST_F(SandboxTerminalTest, TheMasterReadsAnErrorOnceThePtyIsClosed) {
  TerminalPair t = open_terminal(0, 0, 0, 0);
  ASSERT_EQ(write(t.pty.get(), "last", 4), 4);
  t.pty = nullptr;
  // What was written before the close is still read, then EIO: the agent's end of output.
  EXPECT_EQ(read_some(t.master.get(), 4), "last");
  char buf[8];
  errno = 0;
  EXPECT_LT(read(t.master.get(), buf, sizeof(buf)), 0);
  EXPECT_EQ(errno, EIO);
}

TEST_F(SandboxTerminalTest, ABadDevptsFdIsAnErrorNotACrash) {
  EXPECT_LT(attach_devpts(-1, "/nonexistent"), 0);
  EXPECT_EQ(attach_devpts(-1, "/"), -EBADF);
}

}  // namespace
}  // namespace wisp::agent
