#include "agent/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/split.h"

namespace wisp::agent {
namespace {

void write_string(const std::string& path, const std::string& value) {
  int fd;
  KJ_SYSCALL(fd = open(path.c_str(), O_WRONLY | O_CLOEXEC), path);
  kj::AutoCloseFd owned(fd);
  ssize_t n;
  KJ_SYSCALL(n = write(fd, value.data(), value.size()), path, value);
}

// Returns "" when the file does not exist (e.g. memory.peak on an older kernel).
std::string read_string(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  kj::AutoCloseFd owned(fd);
  std::string out;
  char buf[1024];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

void set_up_cgroup_parent() {
  // The root cgroup may hold processes (the agent) and still delegate controllers.
  write_string(std::string(kCgroupRoot) + "/cgroup.subtree_control", "+memory +pids +cpu");
  if (mkdir(kCgroupParent, 0755) < 0 && errno != EEXIST) {
    KJ_FAIL_SYSCALL("mkdir", errno, kCgroupParent);
  }
  write_string(std::string(kCgroupParent) + "/cgroup.subtree_control", "+memory +pids +cpu");
}

Cgroup::Cgroup(std::string name, const CgroupLimits& limits)
    : path_(std::string(kCgroupParent) + "/" + name) {
  if (mkdir(path_.c_str(), 0755) < 0) KJ_FAIL_SYSCALL("mkdir", errno, path_);
  int fd = open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    rmdir(path_.c_str());
    KJ_FAIL_SYSCALL("open", err, path_);
  }
  dir_ = kj::AutoCloseFd(fd);
  set_limits(limits);
  // On OOM, kill the whole tree, not just the largest process: tmpfs pages in the private
  // /tmp belong to no process, so the pick would otherwise be arbitrary.
  if (faccessat(dir_.get(), "memory.oom.group", W_OK, 0) == 0) write_file("memory.oom.group", "1");
  // No swap in wisp guests today; if a rootfs adds some, the limit must still hold.
  if (faccessat(dir_.get(), "memory.swap.max", W_OK, 0) == 0) write_file("memory.swap.max", "0");
}

Cgroup::~Cgroup() {
  // The handler's pid namespace is gone by the time the owner drops this, so the cgroup is
  // normally empty; killing first covers the paths where it is not (timeout, errors).
  if (faccessat(dir_.get(), "cgroup.kill", W_OK, 0) == 0) {
    int fd = openat(dir_.get(), "cgroup.kill", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)!write(fd, "1", 1);
      close(fd);
    }
  }
  dir_ = nullptr;
  // Killed tasks leave the cgroup asynchronously: retry for up to ~50 ms.
  for (int i = 0; i < 250; ++i) {
    if (rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    timespec ts{0, 200 * 1000};
    nanosleep(&ts, nullptr);
  }
  KJ_LOG(WARNING, "could not remove handler cgroup", path_, strerror(errno));
}

void Cgroup::set_limits(const CgroupLimits& limits) {
  write_file("memory.max", std::to_string(limits.memory_bytes));
  write_file("pids.max", std::to_string(limits.pids));
}

void Cgroup::kill_all() { write_file("cgroup.kill", "1"); }

void Cgroup::signal_all(int sig) {
  std::string procs = read_file("cgroup.procs");
  size_t pos = 0;
  while (pos < procs.size()) {
    size_t end = procs.find('\n', pos);
    if (end == std::string::npos) end = procs.size();
    long pid = strtol(procs.c_str() + pos, nullptr, 10);
    if (pid > 0) (void)kill(static_cast<pid_t>(pid), sig);
    pos = end + 1;
  }
}

CgroupStats Cgroup::read_stats() const {
  CgroupStats s;
  std::string peak = read_file("memory.peak");
  if (!peak.empty()) s.peak_memory_bytes = strtoull(peak.c_str(), nullptr, 10);
  s.cpu_time_ns = keyed_value(read_file("cpu.stat"), "usage_usec") * 1000;
  s.oom_killed = keyed_value(read_file("memory.events"), "oom_kill") > 0;
  s.pids_limited = keyed_value(read_file("pids.events"), "max") > 0;
  return s;
}

std::string Cgroup::read_file(const char* file) const { return read_string(path_ + "/" + file); }

void Cgroup::write_file(const char* file, const std::string& value) const {
  write_string(path_ + "/" + file, value);
}

}  // namespace wisp::agent
