// `containerd-shim-wisp-v2 ... start`: containerd runs it with the bundle as working directory
// and reads everything it prints (stdout and stderr together) as the ttrpc address, so nothing
// but the address may be printed on success.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"
#include "shim/bundle_dir.h"
#include "shim/shim_commands.h"
#include "shim/socket_address.h"
#include "shim/stage_clock.h"

namespace wisp::shim {

namespace {

void make_dirs(const std::string& dir) {
  if (dir.empty() || dir == "/") return;
  auto slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) make_dirs(dir.substr(0, slash));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("mkdir " + dir);
}

// True when a process accepts connections on `path`: a shim already serves this task.
bool socket_answers(const sockaddr_un& addr) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
}

// The listening socket at `path`, or an invalid fd when a live shim already has it.
UniqueFd listen_at(const std::string& path) {
  sockaddr_un addr{};
  if (!unix_address(path, &addr)) throw Error("socket path too long: " + path);
  make_dirs(path.substr(0, path.rfind('/')));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EADDRINUSE) throw_errno("bind " + path);
    if (socket_answers(addr)) return UniqueFd();
    // Left by a shim that died: take it over.
    if (::unlink(path.c_str()) != 0) throw_errno("unlink stale socket " + path);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw_errno("bind " + path);
    }
  }
  if (::chmod(path.c_str(), 0600) != 0) throw_errno("chmod " + path);
  if (::listen(fd.get(), 64) != 0) throw_errno("listen " + path);
  return fd;
}

// The serving process's stderr: the bundle's "log" FIFO, which containerd opened for reading
// before running start (it copies what arrives to its own log), else /dev/null.
UniqueFd log_fd(const std::string& bundle) {
  UniqueFd fd(::open((bundle + "/log").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd) {
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    return fd;
  }
  return UniqueFd(::open("/dev/null", O_WRONLY | O_CLOEXEC));
}

// The serving mode is this process forked, not this binary executed again: under emulation
// (the testbed) an exec of the static binary and its start-up cost a quarter of a second,
// paid in every container's start (perf/shim_bench.py's "shim-start" to "serving"). `start`
// has no threads and no event loop yet, so the child may go on running C++ after the fork.
void spawn_server(const ShimOptions& o, const std::string& bundle, UniqueFd listener) {
  UniqueFd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd null_out(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  UniqueFd err = log_fd(bundle);
  if (!null_in || !null_out || !err) throw_errno("open /dev/null");
  std::fflush(nullptr);  // nothing buffered is written twice

  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    // The listener first moves above the stdio and kListenFd slots (it may sit on any of
    // them), then onto kListenFd; containerd's output pipe (stdout, stderr) is let go, or
    // containerd would wait for this process to end before it reads the address.
    ::setsid();
    int moved = ::fcntl(listener.get(), F_DUPFD_CLOEXEC, kListenFd + 1);
    if (moved < 0 || ::dup2(null_in.get(), 0) < 0 || ::dup2(null_out.get(), 1) < 0 ||
        ::dup2(err.get(), 2) < 0 || ::dup2(moved, kListenFd) < 0) {
      ::_exit(127);
    }
    ::close(moved);
    // The originals go, unless one sat on a slot just filled (then it is that slot now).
    for (UniqueFd* fd : {&listener, &null_in, &null_out, &err}) {
      if (fd->get() <= 2 || fd->get() == kListenFd)
        fd->release();
      else
        fd->reset();
    }
    int status = 1;
    try {
      ShimOptions serving = o;
      serving.action.clear();
      serving.bundle = bundle;
      status = run_serve(serving);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "containerd-shim-wisp-v2 serve: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(status);  // not the parent's exit handlers
  }
  // Not waited for: the serving process outlives start (containerd reaps it as subreaper, or
  // init does).
}

}  // namespace

int run_start(const ShimOptions& o) {
  // For the serving mode's stage log: when containerd ran this command (shim/stage_clock.h).
  char at[32];
  std::snprintf(at, sizeof(at), "%.3f", monotonic_seconds());
  ::setenv(kStartedAtVariable, at, 1);
  if (o.id.empty()) throw Error("-id is required");
  if (o.ns.empty()) throw Error("-namespace is required");
  std::string bundle = bundle_dir(o);
  std::string address = socket_address(socket_root(), o.address, o.ns, o.id);
  UniqueFd listener = listen_at(socket_path(address));
  if (listener) spawn_server(o, bundle, std::move(listener));
  // containerd 1.6 reads it back when it restarts, to reconnect to running shims.
  write_file_atomic(bundle + "/address", address, 0600);
  std::fputs(address.c_str(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace wisp::shim
