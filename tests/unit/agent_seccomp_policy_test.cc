#include <errno.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>

#include "agent/seccomp_policy.h"

namespace wisp::agent {
namespace {

TEST(SeccompPolicy, EveryDeniedSyscallIsKnownOnceWithAReason) {
  std::set<std::string> seen;
  for (const DeniedSyscall& s : denied_syscalls()) {
    EXPECT_NE(seccomp_syscall_resolve_name(s.name), __NR_SCMP_ERROR) << s.name;
    EXPECT_TRUE(seen.insert(s.name).second) << "listed twice: " << s.name;
    EXPECT_GT(std::string(s.why).size(), 5u) << s.name;
  }
  for (const char* must : {"ptrace", "mount", "kexec_load", "bpf", "perf_event_open", "keyctl",
                           "init_module", "finit_module", "reboot", "setns", "unshare"}) {
    EXPECT_TRUE(seen.count(must)) << must;
  }
}

// Loads the filter in a child (no root needed with no_new_privs) and checks its rules there.
TEST(SeccompPolicy, FilterDeniesVsockNamespacesAndPtrace) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) _exit(10);
    if (load_handler_seccomp_filter() < 0) _exit(11);
    if (socket(AF_VSOCK, SOCK_STREAM, 0) >= 0 || errno != EPERM) _exit(12);
    if (unshare(CLONE_NEWNS) == 0 || errno != EPERM) _exit(13);
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) _exit(14);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);  // ordinary sockets still work
    if (fd < 0) _exit(15);
    close(fd);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace wisp::agent
