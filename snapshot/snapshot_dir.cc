#include "snapshot/snapshot_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "snapshot/working_set.h"

namespace wisp::snapshot {
namespace {

std::string parent_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Removes what a crashed run left of snapshots of `base` in `parent` (".BASE.tmp-*"
// directories no live process holds locked). Best effort: a leftover only costs space.
void remove_abandoned(const std::string& parent, const std::string& base) {
  DIR* d = ::opendir(parent.c_str());
  if (!d) return;
  std::vector<std::string> found;
  const std::string prefix = "." + base + ".tmp-";
  while (dirent* e = ::readdir(d))
    if (std::string(e->d_name).starts_with(prefix)) found.push_back(e->d_name);
  ::closedir(d);
  for (const std::string& name : found) {
    try {
      remove_if_unlocked(parent + "/" + name);
    } catch (const Error&) {
      // Not ours to remove (another user's), or going away: left as it is.
    }
  }
}

UniqueFd create_file(const std::string& path, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) throw_errno("create " + path);
  return fd;
}

void check_contents_match(const SnapshotState& state, std::span<const RegionContents> regions,
                          const std::string& dir) {
  bool same = regions.size() == state.memory.size();
  for (size_t i = 0; same && i < regions.size(); ++i) same = regions[i].region == state.memory[i];
  if (!same) throw Error(dir + ": guest memory regions do not match the state's memory layout");
}

// The memory file pages to write: the caller's data pages, and for a diff only its layer's.
// Empty means all.
std::vector<bool> pages_to_write(const SnapshotState& state, const std::vector<bool>* data_pages) {
  std::vector<bool> pages;
  if (data_pages) pages = *data_pages;
  if (state.is_diff()) {
    uint64_t n = state.diff.pages.size() * 8;
    if (pages.empty()) pages.assign(n, true);
    pages.resize(n);
    for (uint64_t i = 0; i < n; ++i)
      pages[i] = pages[i] && ((state.diff.pages[i / 8] >> (i % 8)) & 1);
  }
  return pages;
}

}  // namespace

MemoryWriteStats write_snapshot_files(const SnapshotFiles& files, const SnapshotState& state,
                                      std::span<const RegionContents> regions,
                                      const SnapshotWriteOptions& options) {
  validate_state(state, files.dir + " (state being saved)");
  check_contents_match(state, regions, files.dir);
  auto step = [&](std::string_view name) {
    if (options.before_step) options.before_step(name);
  };
  step("state");
  write_state_file(files.state_fd, files.dir + "/" + kStateFileName, state);
  step("memory");
  std::vector<bool> pages = pages_to_write(state, options.data_pages);
  return write_memory_file(files.memory_fd, files.dir + "/" + kMemoryFileName, regions,
                           pages.empty() && !state.is_diff() ? nullptr : &pages);
}

NewSnapshotDir::NewSnapshotDir(std::string dir) : dir_(std::move(dir)), parent_(parent_of(dir_)) {
  struct stat st;
  if (::lstat(dir_.c_str(), &st) == 0) throw Error(dir_ + ": snapshot target already exists");
  remove_abandoned(parent_, base_of(dir_));
  // Locked while in use: a later run's remove_abandoned leaves it alone.
  lock_ = make_locked_temp_dir(parent_ + "/." + base_of(dir_) + ".tmp-XXXXXX", &tmp_);
  try {
    state_ = create_file(tmp_ + "/" + kStateFileName, 0600);
    memory_ = create_file(tmp_ + "/" + kMemoryFileName, 0600);
  } catch (...) {
    remove_temp();  // the destructor does not run for a throwing constructor
    throw;
  }
}

NewSnapshotDir::~NewSnapshotDir() { remove_temp(); }

void NewSnapshotDir::remove_temp() {
  if (tmp_.empty()) return;
  for (const char* name : {kStateFileName, kMemoryFileName}) ::unlink((tmp_ + "/" + name).c_str());
  ::rmdir(tmp_.c_str());
  tmp_.clear();
  lock_.reset();
}

void NewSnapshotDir::commit(const StepHook& before_step, NoReplace how) {
  auto step = [&](std::string_view name) {
    if (before_step) before_step(name);
  };
  step("sync");
  // The VMM that wrote the files fsynced them; this process does not rely on it.
  if (::fsync(state_.get()) != 0) throw_errno("fsync " + tmp_ + "/" + kStateFileName);
  if (::fsync(memory_.get()) != 0) throw_errno("fsync " + tmp_ + "/" + kMemoryFileName);
  fsync_dir(tmp_);
  step("rename");
  // Never replaces a snapshot someone else put there meanwhile.
  try {
    rename_dir_noreplace(tmp_, dir_, how);
  } catch (const Error& e) {
    throw Error(std::string("snapshot ") + e.what());
  }
  tmp_.clear();
  state_.reset();
  memory_.reset();
  lock_.reset();
  fsync_dir(parent_);
}

MemoryWriteStats write_snapshot_dir(const std::string& dir, const SnapshotState& state,
                                    std::span<const RegionContents> regions,
                                    const SnapshotWriteOptions& options) {
  NewSnapshotDir out(dir);
  MemoryWriteStats stats = write_snapshot_files(out.files(), state, regions, options);
  out.commit(options.before_step);
  return stats;
}

SnapshotReport verify_snapshot(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) throw_errno("snapshot " + dir);
  if (!S_ISDIR(st.st_mode)) throw Error(dir + ": not a snapshot directory");
  SnapshotReport report;
  SnapshotState state = read_state_file(dir + "/" + kStateFileName, &report.format);
  std::string memory = dir + "/" + kMemoryFileName;
  if (::stat(memory.c_str(), &st) != 0) throw_errno("memory file " + memory);
  if (!S_ISREG(st.st_mode)) throw Error(memory + ": memory file is not a regular file");
  check_memory_file_size(state.memory, static_cast<uint64_t>(st.st_size), memory);
  report.creator_version = state.metadata.creator_version;
  report.cpu_vendor = cpu_vendor(state.machine.cpuid);
  report.portable = state.machine.cpu_model == CpuModel::kX86_64_v2;
  report.vcpus = state.machine.vcpus.size();
  report.regions = state.memory.size();
  report.devices = 1 + state.machine.virtio.size();  // the serial port and the virtio slots
  for (const MemoryFileRegion& r : state.memory) report.guest_memory_bytes += r.size;
  report.memory_file_bytes = static_cast<uint64_t>(st.st_size);
  report.memory_disk_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  report.id = state.id;
  report.parent_dir = state.diff.parent_dir;
  report.parent_id = state.diff.parent_id;
  std::string ws = dir + "/" + kWorkingSetFileName;
  if (::lstat(ws.c_str(), &st) == 0) {
    WorkingSet set = read_working_set(ws, report.memory_file_bytes / kPageSize);
    report.working_set_pages = static_cast<int64_t>(set.pages());
    report.working_set_ranges = set.ranges.size();
  } else if (errno != ENOENT) {
    throw_errno("working set " + ws);
  }
  return report;
}

std::string SnapshotReport::to_string() const {
  return "format " + std::to_string(format.major) + "." + std::to_string(format.minor) +
         ", state " + std::to_string(format.file_bytes) + " bytes, created by wisp " +
         (creator_version.empty() ? "?" : creator_version) + " on " +
         (cpu_vendor.empty() ? "?" : cpu_vendor) +
         (portable ? " (portable: the x86-64-v2 baseline CPU)" : "") + "\n" +
         std::to_string(vcpus) + " vCPU(s), " + std::to_string(devices) + " device(s), " +
         std::to_string(regions) + " memory region(s), " + std::to_string(guest_memory_bytes) +
         " bytes of guest memory\n" + "memory file " + std::to_string(memory_file_bytes) +
         " bytes, " + std::to_string(memory_disk_bytes) + " allocated on disk\n" +
         (working_set_pages < 0
              ? std::string("no working set\n")
              : "working set " + std::to_string(working_set_pages) + " pages in " +
                    std::to_string(working_set_ranges) + " ranges\n");
}

}  // namespace wisp::snapshot
