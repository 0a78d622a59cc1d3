#include "manager/vmm_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>

#include "api/standby_order.h"
#include "base/file_io.h"
#include "snapshot/machine_snapshot.h"
#include "snapshot/snapshot_inputs.h"
#include "snapshot/snapshot_trust.h"

namespace wisp::manager {
namespace {

// A snapshot file the order hands over: opened without following a symlink at its last
// component, and a regular file (the VMM checks sizes and contents again: it trusts nothing).
UniqueFd open_snapshot_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) throw_errno("snapshot file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("snapshot file " + path);
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  return fd;
}

std::vector<std::string> standby_args(const JailFlags& jail, const StandbyClass& size) {
  std::vector<std::string> a = {"--mem", std::to_string(size.mem_bytes >> 20), "--vcpus",
                                std::to_string(size.vcpus)};
  std::vector<std::string> j = jail_args(jail);
  a.insert(a.end(), j.begin(), j.end());
  return a;
}

}  // namespace

std::string base_memory_file(const std::string& snapshot_dir,
                             const std::vector<std::string>& drives) {
  snapshot::SnapshotInputs in = snapshot::snapshot_inputs(snapshot::read_snapshot_chain(
      canonical_path(snapshot_dir), snapshot::supplied_drives(drives)));
  return in.files.back();  // layers go top first, each its state file and its memory file
}

std::unique_ptr<StandbyVmm> StandbyVmm::spawn(const JailFlags& jail, const StandbyClass& size,
                                              bool control) {
  if (size.mem_bytes % (1ull << 20) != 0) throw Error("standby class: memory not in whole MiB");
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw_errno("standby: socketpair");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  std::unique_ptr<AgentVm> vm =
      AgentVm::standby(standby_args(jail, size), control, theirs.get(), "wisp-standby");
  // Only the VMM holds its end now: when it dies, this end reads end of file.
  theirs.reset();
  return std::unique_ptr<StandbyVmm>(new StandbyVmm(std::move(vm), std::move(ours)));
}

std::optional<std::string> StandbyVmm::read_message() {
  char buf[standby::kMaxOrderBytes + 1];
  ssize_t n;
  while ((n = ::recv(order_.get(), buf, sizeof(buf), MSG_DONTWAIT)) < 0 && errno == EINTR) {
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return std::nullopt;
  if (n < 0) throw vm_->failure(errno_message("standby VMM: its order socket"));
  if (n == 0) {
    // The VMM and its supervisor are gone (they held the only other copy): reap it for the log.
    vm_->vmm().wait_or_kill(std::chrono::milliseconds(1000));
    throw vm_->failure("the standby VMM ended");
  }
  return std::string(buf, static_cast<size_t>(n));
}

bool StandbyVmm::standing_by() {
  if (stage_ == Stage::kStandingBy) return true;
  if (stage_ != Stage::kStarting) return false;
  std::optional<std::string> m = read_message();
  if (!m) return false;
  if (*m != standby::kStandbyLine)
    throw vm_->failure("the standby VMM said \"" + m->substr(0, 64) + "\" instead of standby");
  stage_ = Stage::kStandingBy;
  return true;
}

void StandbyVmm::order_restore(const std::string& snapshot_dir,
                               const std::vector<std::string>& drives, HugePageLayer* layer) {
  if (!standing_by()) throw Error("the VMM is not standing by (yet)");
  std::string dir = canonical_path(snapshot_dir);
  // Admission (snapshot_trust.h): each drive the caller's, or inside the snapshot's directory,
  // with the identity the snapshot recorded; then passed open, since the jail has no path.
  snapshot::SnapshotInputs in = snapshot::snapshot_inputs(
      snapshot::read_snapshot_chain(dir, snapshot::supplied_drives(drives)));
  std::vector<UniqueFd> files;
  std::vector<int> fds;
  for (const std::string& f : in.files) {
    // The base layer's memory file (the last file: layers go top first).
    UniqueFd copy = layer && &f == &in.files.back() ? layer->copy_of(f) : UniqueFd();
    files.push_back(copy ? std::move(copy) : open_snapshot_file(f));
    fds.push_back(files.back().get());
  }
  standby::RestoreOrder order;
  for (const BlockSpec& d : in.drives) {
    files.push_back(snapshot::open_admitted_drive(d));
    fds.push_back(files.back().get());
    order.drive_read_only.push_back(d.read_only);
  }
  // Its working set last: the VMM prefetches it (snapshot/working_set.h).
  if (!in.working_set.empty()) {
    files.push_back(open_snapshot_file(in.working_set));
    fds.push_back(files.back().get());
    order.working_set = true;
    if (!in.written_set.empty()) {
      files.push_back(open_snapshot_file(in.written_set));
      fds.push_back(files.back().get());
      order.written_set = true;
    }
  }
  order.layers = static_cast<uint32_t>(in.files.size() / 2);
  order.source_dir = dir;
  std::string text = standby::encode_order(order);
  try {
    standby::send_message(order_.get(), text, fds);
  } catch (const Error& e) {
    throw vm_->failure(e.what());
  }
  stage_ = Stage::kOrdered;
}

std::optional<std::string> StandbyVmm::poll_ready() {
  if (stage_ == Stage::kReady) return ready_line_;
  if (stage_ != Stage::kOrdered) throw Error("the standby VMM has no order to be ready for");
  std::optional<std::string> m = read_message();
  if (!m) return std::nullopt;
  if (m->rfind("ready ", 0) != 0 || m->back() != '\n')
    throw vm_->failure("the standby VMM said \"" + m->substr(0, 64) + "\" instead of ready");
  ready_line_ = m->substr(0, m->size() - 1);
  vm_->note_ready(ready_line_);
  stage_ = Stage::kReady;
  return ready_line_;
}

std::string StandbyVmm::wait_ready(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (std::optional<std::string> line = poll_ready()) return *line;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw vm_->failure("the standby VMM did not get ready in time");
    pollfd p{order_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
      throw_errno("standby: poll");
  }
}

std::unique_ptr<AgentVm> StandbyVmm::release() {
  if (stage_ != Stage::kReady) throw Error("the standby VMM is not ready: nothing to release");
  order_.reset();
  return std::move(vm_);
}

VmmPool::VmmPool(size_t target, JailFlags jail, StandbyClass size, bool control)
    : target_(target), jail_(std::move(jail)), size_(size), control_(control) {}

VmmPool::~VmmPool() {
  // All asked at once, so their stops overlap; each destructor then reaps its own.
  for (auto& v : vmms_) v->vmm().request_stop();
  vmms_.clear();
}

void VmmPool::prune() {
  for (size_t i = 0; i < vmms_.size();) {
    try {
      vmms_[i]->standing_by();
      ++i;
    } catch (const Error& e) {
      last_error_ = e.what();
      vmms_.erase(vmms_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
}

std::unique_ptr<StandbyVmm> VmmPool::take() {
  prune();
  for (size_t i = 0; i < vmms_.size(); ++i) {
    if (!vmms_[i]->standing_by()) continue;
    std::unique_ptr<StandbyVmm> v = std::move(vmms_[i]);
    vmms_.erase(vmms_.begin() + static_cast<std::ptrdiff_t>(i));
    return v;
  }
  return nullptr;
}

size_t VmmPool::refill() {
  prune();
  size_t spawned = 0;
  while (vmms_.size() < target_) {
    try {
      vmms_.push_back(StandbyVmm::spawn(jail_, size_, control_));
      ++spawned;
    } catch (const Error& e) {
      last_error_ = e.what();
      break;
    }
  }
  return spawned;
}

size_t VmmPool::idle() {
  prune();
  size_t n = 0;
  for (auto& v : vmms_) n += v->standing_by() ? 1 : 0;
  return n;
}

}  // namespace wisp::manager
