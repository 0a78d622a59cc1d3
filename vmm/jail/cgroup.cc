#include "vmm/jail/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/file_io.h"
#include "base/hex.h"
#include "base/log.h"

namespace wisp::jail {
namespace {

// Every VMM's limits need these three, in every cgroup from the root down to the VM's.
constexpr const char* kControllers[] = {"memory", "pids", "cpu"};

// How long remove() waits for the killed processes to leave before giving up: their exit is
// asynchronous after cgroup.kill. A cgroup still busy then is left to remove_stale_cgroups.
constexpr std::chrono::milliseconds kRemoveWait{100};
constexpr std::chrono::milliseconds kRemovePoll{2};

const char* const kNoCgroupHint = "or pass --no-cgroup (debugging only)";

bool has_word(const std::string& list, const std::string& word) {
  std::istringstream in(list);
  std::string w;
  while (in >> w) {
    if (w == word) return true;
  }
  return false;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// "cannot write P: strerror" plus what the errno usually means for a cgroup file.
[[noreturn]] void throw_cgroup_errno(const std::string& what) {
  int err = errno;
  std::string msg = errno_message(what);
  if (err == EACCES || err == EPERM || err == EROFS) {
    msg += " (wisp needs root and a delegated cgroup)";
  } else if (err == EBUSY) {
    msg += " (a cgroup that holds processes of its own cannot pass controllers down)";
  } else if (err == EEXIST) {
    msg += " (left by a crashed VMM and still busy)";
  }
  throw Error(msg);
}

// Cgroup files take one value per write(2): a short or split write would be a different value.
void write_cgroup_file(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) throw_cgroup_errno("cannot write " + path);
  ssize_t n = ::write(fd.get(), value.data(), value.size());
  if (n != static_cast<ssize_t>(value.size())) {
    if (n >= 0) errno = EIO;
    throw_cgroup_errno("cannot write " + path + " (\"" + value + "\")");
  }
}

// A v1 or hybrid host mounts a tmpfs at the root and its hierarchies in it: always systemd's
// own, named "systemd"; the v2 one, if any, as "unified".
bool holds_v1_hierarchies(const std::string& root) {
  for (const char* sub : {"/systemd", "/unified", "/memory"}) {
    struct statfs st;
    if (::statfs((root + sub).c_str(), &st) == 0 &&
        (st.f_type == CGROUP_SUPER_MAGIC || st.f_type == CGROUP2_SUPER_MAGIC)) {
      return true;
    }
  }
  return false;
}

void check_cgroup2(const std::string& root) {
  struct statfs st;
  if (::statfs(root.c_str(), &st) != 0) {
    throw Error(errno_message("cgroup v2 is not mounted at " + root) +
                ": mount it there (mount -t cgroup2 cgroup2 " + root + "), " + kNoCgroupHint);
  }
  if (st.f_type == CGROUP2_SUPER_MAGIC) return;
  if (st.f_type == CGROUP_SUPER_MAGIC || (st.f_type == TMPFS_MAGIC && holds_v1_hierarchies(root))) {
    throw Error("cgroup v2 is not mounted at " + root +
                " (found cgroup v1/hybrid): boot with systemd.unified_cgroup_hierarchy=1, " +
                kNoCgroupHint);
  }
  throw Error("cgroup v2 is not mounted at " + root + " (found a filesystem of type " +
              hex(static_cast<uint64_t>(st.f_type)) + "): mount it there (mount -t cgroup2 " +
              "cgroup2 " + root + "), " + kNoCgroupHint);
}

// Makes kControllers available to DIR's children, writing only those not yet enabled: VMMs
// start concurrently, and "+memory" on a cgroup that has it is harmless but needless.
void enable_controllers(const std::string& dir) {
  std::string available = read_file(dir + "/cgroup.controllers");
  std::string enabled = read_file(dir + "/cgroup.subtree_control");
  std::string add;
  for (const char* c : kControllers) {
    if (!has_word(available, c)) {
      throw Error(std::string("the ") + c + " controller is not available in " + dir +
                  "/cgroup.controllers (it is bound to a cgroup v1 hierarchy, disabled on the " +
                  "kernel command line, or not delegated by the parent cgroup); " + kNoCgroupHint);
    }
    if (!has_word(enabled, c)) add += std::string(add.empty() ? "+" : " +") + c;
  }
  if (!add.empty()) write_cgroup_file(dir + "/cgroup.subtree_control", add);
}

void check_name(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    throw Error("cgroup name \"" + name + "\": expected one path component such as vm-2000000001");
  }
}

std::string limit_value(uint64_t n) { return n == 0 ? "max" : std::to_string(n); }

void write_limits(const std::string& path, const CgroupLimits& limits) {
  write_cgroup_file(path + "/memory.max", limit_value(limits.memory_max));
  // Without swap accounting (or without swap) the file does not exist and nothing can swap.
  if (exists(path + "/memory.swap.max")) write_cgroup_file(path + "/memory.swap.max", "0");
  write_cgroup_file(path + "/pids.max", limit_value(limits.pids_max));
  if (limits.cpu_quota_us) {
    write_cgroup_file(path + "/cpu.max", std::to_string(*limits.cpu_quota_us) + " " +
                                             std::to_string(limits.cpu_period_us));
  }
}

// Kills what is left in the cgroup at PATH (cgroup.kill, Linux 5.14+: the whole subtree at
// once, with no race against forks) and removes it, waiting up to kRemoveWait for the killed
// processes to leave. True when PATH is gone. Logs, never throws.
bool remove_cgroup_dir(const std::string& path) {
  std::string kill = path + "/cgroup.kill";
  if (exists(kill)) {
    try {
      write_cgroup_file(kill, "1");
    } catch (const Error& e) {
      LOG_WARN("%s", e.what());
    }
  }
  auto deadline = std::chrono::steady_clock::now() + kRemoveWait;
  for (;;) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return true;
    if (errno != EBUSY || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(kRemovePoll);
  }
  LOG_WARN("%s", errno_message("cannot remove the cgroup " + path).c_str());
  return false;
}

// The names of the directories in DIR; none when it cannot be read.
std::vector<std::string> subdirectories(const std::string& dir) {
  std::vector<std::string> names;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    if (errno != ENOENT) LOG_WARN("%s", errno_message("cannot list " + dir).c_str());
    return names;
  }
  while (dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    bool is_dir =
        e->d_type == DT_DIR || (e->d_type == DT_UNKNOWN &&
                                ::stat((dir + "/" + n).c_str(), &st) == 0 && S_ISDIR(st.st_mode));
    if (is_dir) names.push_back(n);
  }
  return names;
}

}  // namespace

std::string cgroup2_root() {
  const char* env = std::getenv("WISP_CGROUP_ROOT");
  return env && *env ? env : "/sys/fs/cgroup";
}

MemoryEvents parse_memory_events(const std::string& text) {
  MemoryEvents ev;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t space = line.find(' ');
    std::string key = line.substr(0, space);
    std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size()) {
      throw Error("memory.events: line \"" + line + "\": expected a name and a count");
    }
    if (key == "max") ev.max = n;
    if (key == "oom") ev.oom = n;
    if (key == "oom_kill") ev.oom_kill = n;
  }
  return ev;
}

VmCgroup VmCgroup::create(const std::string& name, const CgroupLimits& limits) {
  check_name(name);
  std::string root = cgroup2_root();
  check_cgroup2(root);
  enable_controllers(root);
  std::string parent = root + "/wisp";
  if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
    throw_cgroup_errno("cannot create the cgroup " + parent);
  }
  enable_controllers(parent);

  VmCgroup cg;
  std::string path = parent + "/" + name;
  if (exists(path)) {
    LOG_INFO("removing the leftover cgroup %s", path.c_str());
    remove_cgroup_dir(path);
  }
  if (::mkdir(path.c_str(), 0755) != 0) throw_cgroup_errno("cannot create the cgroup " + path);
  cg.path_ = path;  // from here on, a throw removes it again (the destructor)
  write_limits(path, limits);
  std::string procs = path + "/cgroup.procs";
  cg.procs_.reset(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
  if (!cg.procs_) throw_cgroup_errno("cannot open " + procs);
  return cg;
}

VmCgroup::~VmCgroup() { remove(); }

VmCgroup::VmCgroup(VmCgroup&& other) noexcept
    : path_(std::exchange(other.path_, std::string())), procs_(std::move(other.procs_)) {}

VmCgroup& VmCgroup::operator=(VmCgroup&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::exchange(other.path_, std::string());
    procs_ = std::move(other.procs_);
  }
  return *this;
}

void VmCgroup::add(pid_t pid) {
  std::string text = std::to_string(pid);
  if (::write(procs_.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    throw_cgroup_errno("cannot move process " + text + " into " + path_ + "/cgroup.procs");
}

MemoryEvents VmCgroup::memory_events() const {
  if (path_.empty()) throw Error("memory.events: the VM has no cgroup");
  return parse_memory_events(read_file(path_ + "/memory.events"));
}

void VmCgroup::remove() {
  if (path_.empty()) return;
  procs_.reset();
  remove_cgroup_dir(path_);
  path_.clear();
}

size_t remove_stale_cgroups(const std::function<bool(const std::string& name)>& is_stale) {
  std::string parent = cgroup2_root() + "/wisp";
  size_t removed = 0;
  for (const std::string& name : subdirectories(parent)) {
    bool stale = false;
    try {
      stale = is_stale(name);
    } catch (const std::exception& e) {
      LOG_WARN("cannot tell whether the cgroup %s/%s is stale: %s", parent.c_str(), name.c_str(),
               e.what());
    }
    if (stale && remove_cgroup_dir(parent + "/" + name)) {
      LOG_INFO("removed the stale cgroup %s/%s", parent.c_str(), name.c_str());
      ++removed;
    }
  }
  return removed;
}

}  // namespace wisp::jail
