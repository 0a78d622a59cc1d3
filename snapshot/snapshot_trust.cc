#include "snapshot/snapshot_trust.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <variant>

#include "base/error.h"
#include "base/file_io.h"
#include "snapshot/crc64.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/state_file.h"

namespace wisp::snapshot {
namespace {

constexpr const char* kDriveRule =
    "a snapshot's drive must be given by the caller at restore (--drive PATH[,ro]) or lie "
    "inside the snapshot's directory";
constexpr const char* kRegularRule = "a snapshot's drive must be a regular file";
constexpr const char* kIdentityRule =
    "a drive must be the image the snapshot recorded (same size, modification time and digest "
    "of its first and last 4 KiB)";
constexpr const char* kParentRule =
    "a diff's parent must be a snapshot in the same directory as the diff";

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool inside(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() + 1 && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// CRC-64 over the first and the last kDriveDigestBytes of the file (once if they overlap).
uint64_t ends_digest(int fd, uint64_t size, const std::string& path) {
  uint64_t head = std::min(size, kDriveDigestBytes);
  uint64_t tail_at = size > 2 * kDriveDigestBytes ? size - kDriveDigestBytes : head;
  Bytes head_bytes(head), tail_bytes(size - tail_at);
  int err = pread_exact(fd, 0, head_bytes);
  if (!err) err = pread_exact(fd, tail_at, tail_bytes);
  if (err) {
    errno = err;
    throw_errno("drive " + path + ": read");
  }
  return crc64(tail_bytes, crc64(head_bytes));
}

std::string describe(const DriveIdentity& id) {
  return std::to_string(id.size_bytes) + " bytes, mtime " + std::to_string(id.mtime_ns) +
         " ns, digest " + std::to_string(id.digest);
}

// The path drive `index` (`recorded`) is opened from, by the drive rule.
std::string admitted_path(const BlockSpec& recorded, size_t index,
                          const std::vector<BlockSpec>& supplied, const std::string& snapshot_dir,
                          const std::string& file) {
  std::string what = file + ": drive " + std::to_string(index) + " (" + recorded.path + ")";
  if (index < supplied.size()) {
    if (supplied[index].read_only != recorded.read_only)
      throw Error(what + ": given " + (supplied[index].read_only ? "read-only" : "read-write") +
                  ", but the snapshot's guest has it " +
                  (recorded.read_only ? "read-only (add \",ro\")" : "read-write"));
    return canonical_path(supplied[index].path);
  }
  std::string path;
  try {
    path = canonical_path(recorded.path);
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
  }
  if (!inside(path, snapshot_dir)) throw Error(what + " is refused: " + kDriveRule);
  return path;
}

}  // namespace

UniqueFd open_drive_image(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP) throw Error("drive " + path + " is a symlink: " + kRegularRule);
    throw_errno("drive " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("drive " + path + ": fstat");
  if (!S_ISREG(st.st_mode))
    throw Error("drive " + path + " is not a regular file (a block device, device node, FIFO, " +
                "socket or directory): " + kRegularRule);
  return fd;
}

DriveIdentity identify_drive(const std::string& path) {
  UniqueFd fd = open_drive_image(path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("drive " + path + ": fstat");
  DriveIdentity id;
  id.size_bytes = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = mtime_ns(st);
  id.digest = ends_digest(fd.get(), id.size_bytes, path);
  return id;
}

void seal_drive_identities(int state_fd, const std::string& state_path, const std::string& dir,
                           const std::string& parent_name) {
  SnapshotState state = read_state_fd(state_fd, state_path);
  bool any = false;
  if (!parent_name.empty()) {
    if (!state.is_diff()) throw Error(state_path + ": a parent name was given for a full snapshot");
    if (parent_name.find('/') != std::string::npos)
      throw Error(state_path + ": parent name " + parent_name + " is not a plain name");
    state.diff.parent_dir = parent_name;
    any = true;
  }
  if (!dir.empty() && state.is_diff()) parent_snapshot_dir(dir, state.diff.parent_dir, state_path);
  for (VirtioSlotState& slot : state.machine.virtio) {
    auto* drive = std::get_if<BlockSpec>(&slot.spec);
    if (!drive) continue;
    DriveIdentity now = identify_drive(drive->path);
    if (now.size_bytes != drive->size_bytes || now.mtime_ns != drive->mtime_ns)
      throw Error(state_path + ": drive " + drive->path +
                  " changed while the snapshot was taken (size or modification time differs)");
    drive->digest = now.digest;
    any = true;
  }
  if (!any) return;
  if (::ftruncate(state_fd, 0) != 0) throw_errno("truncate state file " + state_path);
  write_state_file(state_fd, state_path, state);
}

std::string parent_snapshot_dir(const std::string& child_dir, const std::string& recorded,
                                const std::string& child_file) {
  std::string home = dir_of(canonical_path(child_dir));
  std::string what = child_file + ": parent " + recorded;
  if (recorded.empty() || recorded == "." || recorded == "..")
    throw Error(what + " is refused: " + kParentRule);
  if (recorded.find('/') == std::string::npos) return (home == "/" ? "" : home) + "/" + recorded;
  if (recorded[0] != '/') throw Error(what + " is refused: " + kParentRule);
  std::string resolved = canonical_path(recorded);
  if (dir_of(resolved) != home) throw Error(what + " is refused: " + kParentRule);
  return resolved;
}

void admit_drives(SnapshotChain& chain, const std::vector<BlockSpec>& supplied) {
  const std::string dir = canonical_path(chain.dirs.front());
  const std::string file = chain.dirs.front() + "/" + kStateFileName;
  size_t index = 0;
  for (VirtioSlotState& slot : chain.states.front().machine.virtio) {
    auto* drive = std::get_if<BlockSpec>(&slot.spec);
    if (!drive) continue;
    std::string path = admitted_path(*drive, index, supplied, dir, file);
    DriveIdentity recorded{drive->size_bytes, drive->mtime_ns, drive->digest};
    DriveIdentity found;
    try {
      found = identify_drive(path);
    } catch (const Error& e) {
      throw Error(file + ": " + e.what());
    }
    if (found.size_bytes != recorded.size_bytes || found.mtime_ns != recorded.mtime_ns ||
        found.digest != recorded.digest)
      throw Error(file + ": drive " + path + " is refused: " + kIdentityRule + "; recorded " +
                  describe(recorded) + ", found " + describe(found));
    drive->path = path;
    ++index;
  }
  if (supplied.size() > index)
    throw Error(file + ": " + std::to_string(supplied.size()) +
                " drive(s) given, the snapshot has " + std::to_string(index));
}

std::vector<BlockSpec> supplied_drives(const std::vector<std::string>& specs) {
  std::vector<BlockSpec> out;
  for (const std::string& spec : specs) out.push_back(parse_drive_spec(spec));
  return out;
}

UniqueFd open_admitted_drive(const BlockSpec& admitted) {
  const std::string& path = admitted.path;
  UniqueFd fd(::open(path.c_str(), (admitted.read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW |
                                       O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP) throw Error("drive " + path + " is a symlink: " + kRegularRule);
    throw_errno("drive " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("drive " + path + ": fstat");
  if (!S_ISREG(st.st_mode)) throw Error("drive " + path + ": " + kRegularRule);
  if (static_cast<uint64_t>(st.st_size) != admitted.size_bytes || mtime_ns(st) != admitted.mtime_ns)
    throw Error("drive " + path + " changed after it was admitted: " + kIdentityRule);
  return fd;
}

}  // namespace wisp::snapshot
