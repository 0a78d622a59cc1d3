#include "manager/vmm_child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "base/error.h"
#include "base/file_io.h"
#include "base/self_exe.h"

extern char** environ;

namespace wisp::manager {
namespace {

// Spawn attributes: an empty signal mask in the child, whatever the caller blocks (the CLI
// blocks SIGINT/SIGTERM/SIGHUP to read them from a signalfd; the VMM handles its own).
class SpawnAttr {
 public:
  SpawnAttr() {
    posix_spawnattr_init(&attr_);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr_, &none);
    posix_spawnattr_setflags(&attr_, POSIX_SPAWN_SETSIGMASK);
  }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr_); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
  const posix_spawnattr_t* get() const { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

// A close-on-exec copy of `fd` numbered above every descriptor the child is given (3 to 6).
UniqueFd above_targets(int fd) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 16));
  if (!copy) throw_errno("copying a descriptor for the VMM");
  return copy;
}

}  // namespace

std::string vmm_executable() { return sibling_executable("wisp-vmm"); }

VmmChild::VmmChild(const std::vector<std::string>& args, const std::string& log, bool ready_pipe,
                   int order_fd, std::unique_ptr<host_net::VmNetwork> network, int memory_fd)
    : network_(std::move(network)), log_(log) {
  std::string exe = vmm_executable();
  std::vector<std::string> argv = {exe};
  argv.insert(argv.end(), args.begin(), args.end());
  int pipefd[2] = {-1, -1};
  if (ready_pipe) {
    if (pipe2(pipefd, O_CLOEXEC) != 0) throw_errno("pipe");
    ready_ = UniqueFd(pipefd[0]);
    // The write end is dup'ed to a fixed number in the child (without CLOEXEC).
    argv.insert(argv.end(), {"--ready-fd", "3"});
  }
  // The VMM's lifeline: this process alone holds the write end (close-on-exec, so no other
  // child inherits it); when this process dies, even by SIGKILL, the VMM sees it hang up.
  int lifeline[2];
  if (pipe2(lifeline, O_CLOEXEC) != 0) throw_errno("pipe");
  UniqueFd lifeline_read(lifeline[0]);
  lifeline_ = UniqueFd(lifeline[1]);
  argv.insert(argv.end(), {"--parent-fd", std::to_string(kParentFd)});
  if (order_fd >= 0) argv.insert(argv.end(), {"--order-fd", std::to_string(kOrderFd)});
  if (network_) argv.insert(argv.end(), {"--netns-fd", std::to_string(kNetnsFd)});
  if (memory_fd >= 0) argv.insert(argv.end(), {"--memory-fd", std::to_string(kMemoryFd)});
  std::vector<char*> cargs;
  for (auto& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  // The dup2s below run in order in the child: a source that is another's target (this
  // process's own descriptor 4 is the order socket when it was its first socketpair) would be
  // overwritten before it is copied. So every source is copied above the targets first.
  UniqueFd ready_src, lifeline_src, order_src, netns_src, memory_src;
  if (ready_pipe) ready_src = above_targets(pipefd[1]);
  lifeline_src = above_targets(lifeline_read.get());
  if (order_fd >= 0) order_src = above_targets(order_fd);
  if (network_) netns_src = above_targets(network_->netns_fd());
  if (memory_fd >= 0) memory_src = above_targets(memory_fd);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (ready_pipe) posix_spawn_file_actions_adddup2(&fa, ready_src.get(), 3);
  posix_spawn_file_actions_adddup2(&fa, lifeline_src.get(), kParentFd);
  if (order_fd >= 0) posix_spawn_file_actions_adddup2(&fa, order_src.get(), kOrderFd);
  if (network_) posix_spawn_file_actions_adddup2(&fa, netns_src.get(), kNetnsFd);
  if (memory_fd >= 0) posix_spawn_file_actions_adddup2(&fa, memory_src.get(), kMemoryFd);
  SpawnAttr attr;
  int rc = posix_spawn(&pid_, exe.c_str(), &fa, attr.get(), cargs.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (ready_pipe) ::close(pipefd[1]);
  if (rc != 0) {
    pid_ = -1;
    errno = rc;
    throw_errno("starting the VMM (" + exe + ")");
  }
  pidfd_ = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
}

VmmChild::~VmmChild() { kill_now(); }

bool VmmChild::alive() {
  if (pid_ <= 0) return false;
  pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string VmmChild::wait_ready(std::chrono::milliseconds timeout) {
  if (!ready_) throw Error("VMM started without a ready pipe");
  std::string line;
  auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw Error("the VMM did not get ready in time\n" + log_tail());
    pollfd p{ready_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[256];
    ssize_t r = ::read(ready_.get(), buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      // Closed without a line: the child failed before it was ready.
      wait_or_kill(std::chrono::milliseconds(2000));
      throw Error("the VMM failed:\n" + log_tail());
    }
    line.append(buf, static_cast<size_t>(r));
    size_t nl = line.find('\n');
    if (nl != std::string::npos) return line.substr(0, nl);
  }
}

void VmmChild::request_stop() {
  if (pid_ > 0 && pidfd_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGTERM, nullptr, 0);
}

void VmmChild::kill_now() {
  if (pid_ <= 0) return;
  // SIGTERM first: the jail's supervisor passes it on to the VMM, which stops at once, and then
  // removes the VM's cgroup; a SIGKILL would leave that to the next VMM's start.
  ::kill(pid_, SIGTERM);
  if (pidfd_) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    auto end = std::chrono::steady_clock::now() + kTermGrace;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n > 0 || (n < 0 && errno != EINTR)) break;
    }
  }
  if (waitpid(pid_, &status_, WNOHANG) != pid_) {
    ::kill(pid_, SIGKILL);
    while (waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

int VmmChild::wait_or_kill(std::chrono::milliseconds grace) {
  auto end = std::chrono::steady_clock::now() + grace;
  while (pid_ > 0) {
    pid_t r = waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      break;
    }
    if (std::chrono::steady_clock::now() >= end) {
      kill_now();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return status_;
}

void VmmChild::terminate() {
  if (pidfd_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

std::string VmmChild::log_tail(size_t n) const {
  std::string s;
  try {
    s = read_file(log_);
  } catch (const Error&) {
    return "";
  }
  return s.size() > n ? s.substr(s.size() - n) : s;
}

}  // namespace wisp::manager
