// Runs inside the guest as a hostile handler would (the agent test ships it as the payload):
// tries what the sandbox must refuse, each attempt in its own child so that a seccomp kill of
// one does not hide the others. Prints one "name: result" line per attempt.
#include <errno.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace {

// Exit 0: the call succeeded (a sandbox hole); 1: it failed, errno printed by the child.
template <typename F>
void attempt(const char* name, F call) {
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    long rc = call();
    if (rc == 0)
      std::printf("%s: allowed\n", name);
    else
      std::printf("%s: denied (%s)\n", name, std::strerror(errno));
    std::fflush(stdout);
    _exit(rc == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) std::printf("%s: killed by signal %d\n", name, WTERMSIG(status));
}

}  // namespace

int main() {
  std::printf("uid: %d\n", static_cast<int>(getuid()));
  attempt("ptrace", [] { return ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); });
  attempt("mount", [] { return static_cast<long>(mount("none", "/tmp", "tmpfs", 0, nullptr)); });
  attempt("kill_agent", [] { return static_cast<long>(kill(1, SIGKILL)); });
  attempt("setuid0", [] { return static_cast<long>(setuid(0)); });
  return 0;
}
