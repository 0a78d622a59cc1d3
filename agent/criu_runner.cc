#include "agent/criu_runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/clock.h"

namespace wisp::agent {
namespace {

constexpr size_t kMaxOutputBytes = 64 * 1024;
constexpr size_t kMaxInheritedFds = 8;

std::string read_tail(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st;
  std::string out;
  if (fstat(fd, &st) == 0) {
    off_t start = st.st_size > static_cast<off_t>(kMaxOutputBytes)
                      ? st.st_size - static_cast<off_t>(kMaxOutputBytes)
                      : 0;
    out.resize(static_cast<size_t>(st.st_size - start));
    ssize_t n = pread(fd, out.data(), out.size(), start);
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  close(fd);
  return out;
}

// The child between clone3 and execve: only syscalls.
[[noreturn]] void exec_criu(const CriuSpawn& spawn, char** argv, int log_fd) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
  if (spawn.join_net_ns_fd >= 0 && setns(spawn.join_net_ns_fd, CLONE_NEWNET) < 0) _exit(125);
  if (spawn.new_net_ns) {
    if (unshare(CLONE_NEWNET) < 0) _exit(120);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
      ifreq ifr{};
      strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
      ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
      (void)ioctl(s, SIOCSIFFLAGS, &ifr);
      close(s);
    }
  }
  // Out of the way first, so a target number that is also a source is not overwritten.
  int moved[kMaxInheritedFds + 1];
  size_t n_moved = 0;
  for (auto [from, to] : spawn.fds) {
    (void)to;
    int m = fcntl(from, F_DUPFD, 100);
    if (m < 0) _exit(121);
    moved[n_moved++] = m;
  }
  if (spawn.new_net_ns && spawn.net_ns_fd >= 0) {
    int ns = open("/proc/self/ns/net", O_RDONLY);
    if (ns < 0) _exit(124);
    moved[n_moved++] = fcntl(ns, F_DUPFD, 100);
  }
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) _exit(122);
  for (size_t i = 0; i < n_moved; ++i) {
    int to = i < spawn.fds.size() ? spawn.fds[i].second : spawn.net_ns_fd;
    if (moved[i] < 0 || dup2(moved[i], to) < 0) _exit(123);  // dup2 clears FD_CLOEXEC
  }
  // Everything else the agent holds stays out of criu (and of what it restores).
  int first = std::max(3, spawn.net_ns_fd + 1);
  for (auto [from, to] : spawn.fds) first = std::max(first, to + 1);
  syscall(SYS_close_range, first, ~0U, 0);
  execv(kCriuBinary, argv);
  _exit(127);
}

}  // namespace

bool CriuRun::ok() const { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }

std::string CriuRun::describe(const std::string& what) const {
  std::string how = WIFEXITED(wait_status)
                        ? "exited with status " + std::to_string(WEXITSTATUS(wait_status))
                        : "was killed by signal " + std::to_string(WTERMSIG(wait_status));
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 127)
    how += " (cannot execute " + std::string(kCriuBinary) + ")";
  // The last lines say why; CRIU's errors are "Error (file:line): ..." lines near the end.
  std::string tail = output;
  size_t keep = 2000;
  if (tail.size() > keep) tail = "..." + tail.substr(tail.size() - keep);
  return what + ": criu " + how + (tail.empty() ? "" : ":\n" + tail);
}

kj::Promise<CriuRun> run_criu(AgentServices& services, const CriuSpawn& spawn) {
  mkdir(kCriuWorkDir, 0700);
  std::string log_path =
      std::string(kCriuWorkDir) + "/criu-" + std::to_string(++services.next_id) + ".out";
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) KJ_FAIL_SYSCALL("open criu's output file", errno, log_path);
  kj::AutoCloseFd log(log_fd);

  KJ_REQUIRE(spawn.fds.size() <= kMaxInheritedFds, "too many descriptors for criu");
  std::vector<std::string> storage = {"criu"};
  storage.insert(storage.end(), spawn.args.begin(), spawn.args.end());
  std::vector<char*> argv;
  for (auto& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  clone_args args{};
  args.exit_signal = SIGCHLD;
  if (spawn.cgroup_fd >= 0) {
    args.flags = CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(spawn.cgroup_fd);
  }
  uint64_t start = now_ns();
  long pid = syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) KJ_FAIL_SYSCALL("clone3 (criu)", errno);
  if (pid == 0) exec_criu(spawn, argv.data(), log_fd);
  return services.reaper.wait_for_exit(static_cast<pid_t>(pid)).then([start, log_path](ExitInfo e) {
    CriuRun r;
    r.wait_status = e.wait_status;
    r.duration_ns = now_ns() - start;
    r.output = read_tail(log_path);
    unlink(log_path.c_str());
    return r;
  });
}

void remove_criu_dir(const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (d != nullptr) {
    while (dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
  }
  rmdir(path.c_str());
}

std::string fresh_criu_dir(const std::string& name) {
  mkdir(kCriuWorkDir, 0700);
  std::string path = std::string(kCriuWorkDir) + "/" + name;
  remove_criu_dir(path);
  if (mkdir(path.c_str(), 0700) < 0) KJ_FAIL_SYSCALL("mkdir", errno, path);
  return path;
}

}  // namespace wisp::agent
