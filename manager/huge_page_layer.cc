#include "manager/huge_page_layer.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

namespace wisp::manager {
namespace {

// One sendfile at most: 16 MiB.
constexpr off_t kChunk = off_t{16} << 20;

// A detached tmpfs of 2 MiB pages, `max_bytes` at most. Invalid fd and `why` when refused.
UniqueFd mount_huge_tmpfs(uint64_t max_bytes, std::string* why) {
  UniqueFd fs(fsopen("tmpfs", FSOPEN_CLOEXEC));
  if (!fs) {
    *why = errno_message("fsopen tmpfs");
    return {};
  }
  const std::string size = std::to_string(max_bytes);
  // within_size: a 2 MiB page wherever the file's size covers it (a memory file is sized to
  // the guest's RAM before a byte is written, so: everywhere it holds data).
  const std::pair<const char*, const char*> options[] = {
      {"huge", "within_size"}, {"size", size.c_str()}, {"mode", "0700"}};
  for (const auto& [key, value] : options) {
    if (fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value, 0) != 0) {
      *why = errno_message(std::string("tmpfs option ") + key + "=" + value);
      return {};
    }
  }
  if (fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    *why = errno_message("creating the tmpfs");
    return {};
  }
  UniqueFd mnt(
      fsmount(fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  if (!mnt) *why = errno_message("fsmount");
  return mnt;
}

// Copies the data of `from` into `to` (sized alike): SEEK_DATA/SEEK_HOLE, so the store's
// holes (pages the guest never wrote) stay holes unless they share a 2 MiB page with data.
// sendfile copies in the kernel: no buffer of serve's own (its RSS stays flat, issue 12).
void copy_data(int from, int to, uint64_t size, const std::string& path) {
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    off_t data = ::lseek(from, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0) throw_errno("huge-page layer: seeking data in " + path);
    off_t hole = ::lseek(from, data, SEEK_HOLE);
    if (hole < 0) throw_errno("huge-page layer: seeking a hole in " + path);
    if (::lseek(to, data, SEEK_SET) != data) throw_errno("huge-page layer: seeking in a copy");
    for (off_t at = data; at < hole;) {
      size_t n = static_cast<size_t>(std::min(hole - at, kChunk));
      ssize_t done = ::sendfile(to, from, &at, n);  // advances `at`
      if (done < 0 && errno == EINTR) continue;
      if (done < 0) throw_errno("huge-page layer: copying " + path);
      if (done == 0) throw Error("huge-page layer: " + path + " ended early (truncated?)");
    }
    pos = hole;
  }
}

}  // namespace

std::unique_ptr<HugePageLayer> HugePageLayer::create(uint64_t max_mib, std::string* why) {
  if (max_mib == 0) {
    *why = "no size";
    return nullptr;
  }
  UniqueFd mnt = mount_huge_tmpfs(max_mib << 20, why);
  if (!mnt) return nullptr;
  return std::unique_ptr<HugePageLayer>(new HugePageLayer(std::move(mnt), max_mib << 20));
}

HugePageLayer::HugePageLayer(UniqueFd mount, uint64_t max_bytes)
    : mount_(std::move(mount)), max_bytes_(max_bytes), worker_([this] { work(); }) {}

HugePageLayer::~HugePageLayer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;  // a copy under way finishes; queued ones are dropped with the mount
  }
  cv_.notify_all();
  worker_.join();
}

void HugePageLayer::work() {
  // Copies use only idle CPU: on a host of few CPUs (the testbed has one) a copy beside a call
  // would take its time from the call (tens of MiB to zero, read and write).
  struct sched_param idle {};
  if (sched_setscheduler(0, SCHED_IDLE, &idle) != 0)  // 0: this thread
    LOG_WARN("huge-page layer: its copies run at normal priority: %s", std::strerror(errno));
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    make_copy(job);
    lock.lock();
    --pending_;
    cv_.notify_all();
  }
}

uint64_t HugePageLayer::bytes_locked(bool made_only) const {
  uint64_t sum = 0;
  for (const auto& [path, c] : copies_) sum += made_only && !c.fd ? 0 : c.bytes;
  return sum;
}

void HugePageLayer::drop_locked(std::map<std::string, Copy>::iterator it) {
  // Unlinked now; a clone that maps it keeps its pages until it ends.
  ::unlinkat(mount_.get(), it->second.name.c_str(), 0);
  copies_.erase(it);
}

UniqueFd HugePageLayer::copy_of(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  Identity now{st.st_dev, st.st_ino, st.st_size,
               int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
  std::lock_guard<std::mutex> lock(mu_);
  auto it = copies_.find(path);
  if (it != copies_.end() && !(it->second.of == now)) {
    if (!it->second.fd && !it->second.failed) return {};  // being copied: wait for that first
    drop_locked(it);
    it = copies_.end();
  }
  if (it != copies_.end()) {
    if (!it->second.fd) return {};  // being made, or failed
    return UniqueFd(::fcntl(it->second.fd.get(), F_DUPFD_CLOEXEC, 0));
  }
  const uint64_t size = static_cast<uint64_t>(now.size);
  if (bytes_locked(/*made_only=*/false) + size > max_bytes_)
    return {};  // it would not fit: the store's file
  Copy c;
  c.of = now;
  c.name = "memory-" + std::to_string(next_name_++);
  c.bytes = size;
  const std::string name = c.name;
  copies_.emplace(path, std::move(c));
  jobs_.push_back({path, now, name});
  ++pending_;
  cv_.notify_all();
  return {};
}

void HugePageLayer::make_copy(const Job& job) {
  const std::string& path = job.path;
  const std::string& name = job.name;
  const Identity& of = job.of;
  uint64_t t0 = now_ns();
  UniqueFd out;
  uint64_t bytes = 0;
  std::string error;
  try {
    UniqueFd in(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!in) throw_errno("huge-page layer: " + path);
    struct stat st;
    if (::fstat(in.get(), &st) != 0) throw_errno("huge-page layer: " + path);
    if (st.st_ino != of.ino || st.st_dev != of.dev || st.st_size != of.size)
      throw Error("huge-page layer: " + path + " changed before it was copied");
    UniqueFd w(::openat(mount_.get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!w) throw_errno("huge-page layer: creating the copy of " + path);
    if (::ftruncate(w.get(), of.size) != 0) throw_errno("huge-page layer: sizing a copy");
    copy_data(in.get(), w.get(), static_cast<uint64_t>(of.size), path);
    // Read-only from here on: the VMMs map it MAP_PRIVATE and never write through it.
    out = UniqueFd(::openat(mount_.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!out) throw_errno("huge-page layer: reopening the copy of " + path);
    struct stat done;
    if (::fstat(out.get(), &done) != 0) throw_errno("huge-page layer: a copy");
    bytes = static_cast<uint64_t>(done.st_blocks) * 512;
  } catch (const Error& e) {
    error = e.what();
    out.reset();
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = copies_.find(path);
  if (it == copies_.end() || it->second.name != name) {  // dropped meanwhile
    ::unlinkat(mount_.get(), name.c_str(), 0);
    return;
  }
  Copy& c = it->second;
  if (!out) {
    // ENOSPC (the layer is full) or the store's file went: restores keep mapping the store's.
    LOG_WARN("%s; restores of it map the store's file", error.c_str());
    ::unlinkat(mount_.get(), name.c_str(), 0);
    c.failed = true;
    c.bytes = 0;
    return;
  }
  c.fd = std::move(out);
  c.bytes = bytes;
  LOG_INFO("huge-page layer: %s copied (%.1f MiB in 2 MiB pages) in %.1f ms", path.c_str(),
           static_cast<double>(bytes) / (1 << 20), static_cast<double>(now_ns() - t0) / 1e6);
}

uint64_t HugePageLayer::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_locked(/*made_only=*/true);
}

size_t HugePageLayer::copies() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [path, c] : copies_) n += c.fd ? 1 : 0;
  return n;
}

void HugePageLayer::wait_idle() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return pending_ == 0; });
}

}  // namespace wisp::manager
