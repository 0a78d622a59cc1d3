#include "agent/pid1.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "agent/root_overlay.h"

namespace wisp::agent {
namespace {

struct EarlyMount {
  const char* source;
  const char* target;
  const char* type;
  unsigned long flags;
  const char* options;
};

constexpr EarlyMount kEarlyMounts[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
    {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=755"},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666"},
    {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755"},
    // The scratch space (agent.capnp putFile/getFile), shared by every handler sandbox: owned
    // by the handler user (sandbox.h kHandlerUid), a quarter of RAM at most. A handler's writes
    // are charged to its cgroup; the agent's putFile writes to no handler's.
    {"tmpfs", "/scratch", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,uid=65534,gid=65534,size=25%"},
    {"cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
};

void ensure_console() {
  if (fcntl(STDERR_FILENO, F_GETFD) >= 0) return;
  int fd = open("/dev/console", O_RDWR | O_NOCTTY);
  if (fd < 0) return;
  for (int target = 0; target <= 2; ++target) {
    if (fcntl(target, F_GETFD) < 0) dup2(fd, target);
  }
  if (fd > 2) close(fd);
}

}  // namespace

void set_up_pid1() {
  umask(022);
  mount_root_overlay();
  for (const EarlyMount& m : kEarlyMounts) {
    mkdir(m.target, 0755);
    if (mount(m.source, m.target, m.type, m.flags, m.options) < 0 && errno != EBUSY) {
      // Keep going: a missing /dev/shm is no reason to lose the VM.
      if (m.target[1] != 'p') ensure_console();
      console_log("mount %s on %s: %s", m.type, m.target, strerror(errno));
    }
    if (strcmp(m.target, "/dev") == 0) ensure_console();
  }
  setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 1);
}

void power_off() {
  console_log("poweroff");
  kill(-1, SIGKILL);
  sync();
  struct stat st;
  bool acpi = stat("/sys/firmware/acpi", &st) == 0;
  reboot(acpi ? RB_POWER_OFF : RB_AUTOBOOT);
  // Not PID 1 (a test run on a host) or reboot refused: just end.
  _exit(0);
}

uint64_t init_handover_ns() {
  int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return 0;
  char record[2048];
  uint64_t found = 0;
  for (;;) {
    ssize_t n = read(fd, record, sizeof(record) - 1);
    if (n < 0 && errno == EPIPE) continue;  // overwritten records: skip ahead
    if (n <= 0) break;
    record[n] = '\0';
    // "<prio>,<seq>,<usec>,<flags>;<text>"
    const char* text = strchr(record, ';');
    // "Run /init as init process" (initramfs), "Run /usr/sbin/wisp-agent as init process"
    // (a root filesystem booted with init=).
    if (text == nullptr || strstr(text, "Run /") == nullptr ||
        strstr(text, " as init process") == nullptr)
      continue;
    const char* p = strchr(record, ',');
    if (p != nullptr) p = strchr(p + 1, ',');
    if (p != nullptr) found = strtoull(p + 1, nullptr, 10) * 1000;
    break;
  }
  close(fd);
  return found;
}

void console_log(const char* format, ...) {
  char line[512];
  int prefix = snprintf(line, sizeof(line), "wisp-agent: ");
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line + prefix, sizeof(line) - prefix - 1, format, args);
  va_end(args);
  size_t len = static_cast<size_t>(prefix) + (n < 0 ? 0 : static_cast<size_t>(n));
  if (len > sizeof(line) - 2) len = sizeof(line) - 2;
  line[len++] = '\n';
  (void)!write(STDERR_FILENO, line, len);
}

}  // namespace wisp::agent
