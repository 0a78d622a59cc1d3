#include "agent/sandbox_terminal.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <termios.h>
#include <unistd.h>

namespace wisp::agent {
namespace {

void set_option(int fs, const char* key, const char* value) {
  if (fsconfig(fs, FSCONFIG_SET_STRING, key, value, 0) < 0) {
    KJ_FAIL_SYSCALL("fsconfig devpts", errno, key, value);
  }
}

}  // namespace

TerminalPair open_terminal(uint32_t uid, uint32_t gid, uint16_t width, uint16_t height) {
  TerminalPair t;
  int fs = fsopen("devpts", FSOPEN_CLOEXEC);
  if (fs < 0) KJ_FAIL_SYSCALL("fsopen devpts (the terminal's own devpts instance)", errno);
  kj::AutoCloseFd fs_fd(fs);
  // ptmxmode 0666: the command may open more terminals of its instance (/dev/ptmx links to
  // pts/ptmx in the sandbox); mode 0620: a pty is its owner's. max: a bound on them.
  set_option(fs, "ptmxmode", "0666");
  set_option(fs, "mode", "0620");
  set_option(fs, "max", "64");
  if (fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    KJ_FAIL_SYSCALL("fsconfig devpts create", errno);
  }
  int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  if (mnt < 0) KJ_FAIL_SYSCALL("fsmount devpts", errno);
  t.devpts = kj::AutoCloseFd(mnt);
  int master;
  KJ_SYSCALL(master = openat(mnt, "ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), "open devpts ptmx");
  t.master = kj::AutoCloseFd(master);
  int unlock = 0;
  KJ_SYSCALL(ioctl(master, TIOCSPTLCK, &unlock), "unlock the pty");
  int pty;
  KJ_SYSCALL(pty = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC), "open the pty");
  t.pty = kj::AutoCloseFd(pty);
  // The command's user owns its terminal (it may reopen /dev/pts/0, chmod it: mesg, write).
  KJ_SYSCALL(fchown(pty, uid, gid), "chown the pty");
  if (width != 0 && height != 0) resize_terminal(master, width, height);
  return t;
}

void resize_terminal(int master, uint16_t width, uint16_t height) {
  winsize ws{};
  ws.ws_col = width;
  ws.ws_row = height;
  KJ_SYSCALL(ioctl(master, TIOCSWINSZ, &ws), "resize the terminal", width, height);
}

int terminal_eof_char(int master) {
  // On a pty master, TCGETS answers the pty's (the command's side's) settings.
  termios t;
  KJ_SYSCALL(tcgetattr(master, &t), "read the terminal's settings");
  cc_t c = t.c_cc[VEOF];
  return c == _POSIX_VDISABLE ? -1 : c;
}

int attach_devpts(int devpts, const char* path) {
  if (move_mount(devpts, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0) return -errno;
  return 0;
}

}  // namespace wisp::agent
