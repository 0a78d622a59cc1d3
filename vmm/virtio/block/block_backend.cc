#include "vmm/virtio/block/block_backend.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "base/error.h"
#include "base/file_io.h"
#include "base/log.h"

namespace wisp {

BlockSpec parse_drive_spec(const std::string& spec) {
  auto fail = [&](const std::string& why) -> BlockSpec {
    throw Error("--drive \"" + spec + "\": " + why + " (expected PATH or PATH,ro)");
  };
  size_t comma = spec.find(',');
  BlockSpec out;
  out.path = spec.substr(0, comma);
  if (out.path.empty()) return fail("the image path is empty");
  bool seen_mode = false;
  while (comma != std::string::npos) {
    size_t next = spec.find(',', comma + 1);
    std::string opt = spec.substr(comma + 1, next == std::string::npos ? next : next - comma - 1);
    if (opt == "ro" || opt == "rw") {
      if (seen_mode) return fail("\"ro\"/\"rw\" given twice");
      seen_mode = true;
      out.read_only = opt == "ro";
    } else if (opt.empty()) {
      return fail("empty option after ','");
    } else {
      return fail("unknown option \"" + opt + "\" (paths containing ',' are not supported)");
    }
    comma = next;
  }
  return out;
}

namespace {

std::mutex provided_mutex;
std::map<std::string, UniqueFd>& provided_fds() {
  static std::map<std::string, UniqueFd> fds;
  return fds;
}

UniqueFd take_provided_fd(const std::string& path) {
  std::lock_guard lock(provided_mutex);
  auto it = provided_fds().find(path);
  if (it == provided_fds().end()) return UniqueFd();
  UniqueFd fd = std::move(it->second);
  provided_fds().erase(it);
  return fd;
}

}  // namespace

void provide_drive_fd(const std::string& path, UniqueFd fd) {
  std::lock_guard lock(provided_mutex);
  if (!provided_fds().emplace(path, std::move(fd)).second)
    throw Error("drive " + path + " is given twice");
}

std::unique_ptr<RawFileBackend> RawFileBackend::open(const BlockSpec& spec) {
  std::unique_ptr<RawFileBackend> b(new RawFileBackend());
  b->read_only_ = spec.read_only;
  b->fd_ = take_provided_fd(spec.path);
  if (b->fd_) {
    // Given open: its access mode must be the one this drive is attached with.
    int flags = ::fcntl(b->fd_.get(), F_GETFL);
    if (flags < 0) throw_errno("drive " + spec.path + ": F_GETFL");
    if ((flags & O_ACCMODE) != (spec.read_only ? O_RDONLY : O_RDWR))
      throw Error("drive " + spec.path + ": its descriptor was not opened " +
                  (spec.read_only ? "read-only" : "read-write"));
  } else {
    b->fd_ = UniqueFd(::open(spec.path.c_str(), (spec.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  }
  if (!b->fd_) {
    int e = errno;
    std::string msg = errno_message("drive " + spec.path);
    if (!spec.read_only && (e == EACCES || e == EROFS || e == EPERM))
      msg += " (add \",ro\" to attach it read-only)";
    throw Error(msg);
  }
  struct stat st;
  if (fstat(b->fd_.get(), &st) != 0) throw_errno("drive " + spec.path + ": fstat");
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    throw Error("drive " + spec.path + ": not a regular file or block device");
  // Shared lock for readers, exclusive for a writer: a second writer (or a reader next to a
  // writer) is refused instead of corrupting the image or reading torn data.
  if (flock(b->fd_.get(), (spec.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      throw Error("drive " + spec.path +
                  " is in use by another process; share an image only with \",ro\" everywhere");
    throw_errno("drive " + spec.path + ": flock");
  }
  off_t end = lseek(b->fd_.get(), 0, SEEK_END);  // works for block devices too
  if (end < 0) throw_errno("drive " + spec.path + ": size");
  b->size_ = static_cast<uint64_t>(end);
  if (b->size_ % 512 != 0)
    LOG_WARN("drive %s: size %" PRIu64 " is not a multiple of 512; the last %" PRIu64
             " bytes are not visible to the guest",
             spec.path.c_str(), b->size_, b->size_ % 512);
  // Device and inode: stable for the file, distinct between files on one host.
  char id[32];
  snprintf(id, sizeof(id), "%" PRIx64 "-%" PRIx64, static_cast<uint64_t>(st.st_dev),
           static_cast<uint64_t>(st.st_ino));
  b->id_ = std::string(id).substr(0, kIdBytes);
  return b;
}

namespace {

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

BlockSpec BlockKind::record_identity(const BlockSpec& spec) {
  char real[PATH_MAX];
  if (!::realpath(spec.path.c_str(), real)) throw_errno("drive " + spec.path);
  struct stat st;
  if (::stat(real, &st) != 0) throw_errno("drive " + spec.path);
  BlockSpec out = spec;
  out.path = real;
  out.size_bytes = static_cast<uint64_t>(st.st_size);
  out.mtime_ns = mtime_ns(st);
  return out;
}

void BlockKind::check_identity(const BlockSpec& spec) {
  struct stat st;
  if (::stat(spec.path.c_str(), &st) != 0)
    throw Error("drive " + spec.path + ": " + std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) != spec.size_bytes || mtime_ns(st) != spec.mtime_ns)
    throw Error("drive " + spec.path +
                " changed since the snapshot (size or modification time differs); the "
                "guest's cached blocks would not match it");
}

int RawFileBackend::read_at(uint64_t offset, std::span<uint8_t> out) {
  return pread_exact(fd_.get(), offset, out);
}

int RawFileBackend::write_at(uint64_t offset, std::span<const uint8_t> in) {
  if (read_only_) return EROFS;
  return pwrite_exact(fd_.get(), offset, in);
}

int RawFileBackend::flush() {
  if (read_only_) return 0;
  return fdatasync(fd_.get()) == 0 ? 0 : errno;
}

}  // namespace wisp
