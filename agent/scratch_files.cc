#include "agent/scratch_files.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/sandbox.h"

namespace wisp::agent {
namespace {

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// The message for a failed open of `part` (a component of `path`).
[[noreturn]] void fail_open(int err, int dir, const std::string& part, std::string_view path) {
  // O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR, not ELOOP: look at what it is.
  struct stat st;
  if (err == ENOTDIR && fstatat(dir, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK(st.st_mode))
    err = ELOOP;
  if (err == ELOOP)
    KJ_FAIL_REQUIRE("scratch path is refused: a component is a symlink (not followed)",
                    quoted(part), quoted(path));
  if (err == ENOTDIR)
    KJ_FAIL_REQUIRE("scratch path is refused: a component is not a directory", quoted(part),
                    quoted(path));
  if (err == ENOENT) KJ_FAIL_REQUIRE("no such file in the scratch space", quoted(path));
  KJ_FAIL_SYSCALL("open in the scratch space", err, quoted(part), quoted(path));
}

void write_all(int fd, kj::ArrayPtr<const kj::byte> data, std::string_view path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.begin() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ENOSPC) KJ_FAIL_REQUIRE("the scratch space is full", quoted(path));
    if (n < 0) KJ_FAIL_SYSCALL("write to the scratch space", errno, quoted(path));
    done += static_cast<size_t>(n);
  }
}

}  // namespace

std::vector<std::string> split_scratch_path(std::string_view path) {
  KJ_REQUIRE(!path.empty(), "scratch path is empty");
  KJ_REQUIRE(path.size() <= kMaxScratchPathBytes, "scratch path is too long", path.size(),
             kMaxScratchPathBytes);
  KJ_REQUIRE(path.find('\0') == std::string_view::npos, "scratch path contains a NUL byte");
  KJ_REQUIRE(path.front() != '/', "scratch path must be relative to /scratch, not absolute",
             quoted(path));
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string_view part =
        path.substr(start, slash == std::string_view::npos ? slash : slash - start);
    KJ_REQUIRE(!part.empty(), "scratch path has an empty component (\"//\" or a trailing \"/\")",
               quoted(path));
    KJ_REQUIRE(part != "." && part != "..", "scratch path may not contain \".\" or \"..\"",
               quoted(path));
    KJ_REQUIRE(part.size() <= kMaxScratchNameBytes, "scratch path component is too long",
               part.size(), kMaxScratchNameBytes);
    parts.emplace_back(part);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

ScratchDir::ScratchDir(kj::AutoCloseFd root, uid_t owner, gid_t group, uint64_t max_file_bytes)
    : root_(kj::mv(root)), owner_(owner), group_(group), max_file_bytes_(max_file_bytes) {}

ScratchDir ScratchDir::open_default(uint64_t max_file_bytes) {
  int fd = open(kScratchDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) KJ_FAIL_SYSCALL("open the scratch space", errno, kScratchDir);
  return ScratchDir(kj::AutoCloseFd(fd), kHandlerUid, kHandlerGid, max_file_bytes);
}

kj::AutoCloseFd ScratchDir::open_parent(const std::vector<std::string>& parts,
                                        std::string_view path, bool create) {
  int dir = dup(root_.get());
  if (dir < 0) KJ_FAIL_SYSCALL("dup", errno);
  kj::AutoCloseFd current(dir);
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (create && mkdirat(current.get(), part.c_str(), 0755) == 0 && owner_ != uid_t(-1)) {
      (void)!fchownat(current.get(), part.c_str(), owner_, group_, AT_SYMLINK_NOFOLLOW);
    }
    // One component, never "..", never following a symlink: nothing can lead outside.
    int fd = openat(current.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) fail_open(errno, current.get(), part, path);
    current = kj::AutoCloseFd(fd);
  }
  return current;
}

void ScratchDir::put(std::string_view path, kj::ArrayPtr<const kj::byte> data, uint32_t mode) {
  std::vector<std::string> parts = split_scratch_path(path);
  KJ_REQUIRE(data.size() <= max_file_bytes_, "putFile: the data is over the size cap", data.size(),
             max_file_bytes_);
  mode = mode == 0 ? kDefaultScratchFileMode : (mode & 0777);  // never setuid/setgid/sticky
  kj::AutoCloseFd parent = open_parent(parts, path, /*create=*/true);
  const std::string& name = parts.back();
  // A temporary name of our own (O_EXCL: never an existing file, FIFO or symlink) renamed
  // over the target: a reader never sees half a file, and what was at the name is not opened.
  std::string temp =
      ".wisp-put-" + std::to_string(getpid()) + "-" + std::to_string(++temp_counter_);
  int fd = openat(parent.get(), temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600);
  if (fd < 0) KJ_FAIL_SYSCALL("create a file in the scratch space", errno, quoted(path));
  kj::AutoCloseFd file(fd);
  bool renamed = false;
  KJ_DEFER(if (!renamed) unlinkat(parent.get(), temp.c_str(), 0));
  write_all(file.get(), data, path);
  // fchmod after the umask had its say; chown first, since it clears set-id bits anyway.
  if (owner_ != uid_t(-1) && fchown(file.get(), owner_, group_) < 0)
    KJ_FAIL_SYSCALL("chown a scratch file", errno, quoted(path));
  if (fchmod(file.get(), mode) < 0) KJ_FAIL_SYSCALL("chmod a scratch file", errno, quoted(path));
  if (renameat(parent.get(), temp.c_str(), parent.get(), name.c_str()) < 0) {
    int err = errno;
    if (err == EISDIR || err == ENOTEMPTY || err == EEXIST)
      KJ_FAIL_REQUIRE("putFile: the path names a directory", quoted(path));
    KJ_FAIL_SYSCALL("rename into place in the scratch space", err, quoted(path));
  }
  renamed = true;
}

std::string ScratchDir::get(std::string_view path) {
  std::vector<std::string> parts = split_scratch_path(path);
  kj::AutoCloseFd parent = open_parent(parts, path, /*create=*/false);
  // O_NONBLOCK: a FIFO planted by a handler must not block the agent in open().
  int fd = openat(parent.get(), parts.back().c_str(),
                  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) fail_open(errno, parent.get(), parts.back(), path);
  kj::AutoCloseFd file(fd);
  struct stat st;
  if (fstat(file.get(), &st) < 0) KJ_FAIL_SYSCALL("fstat", errno, quoted(path));
  KJ_REQUIRE(S_ISREG(st.st_mode), "getFile: not a regular file", quoted(path));
  KJ_REQUIRE(static_cast<uint64_t>(st.st_size) <= max_file_bytes_,
             "getFile: the file is over the size cap", st.st_size, max_file_bytes_);
  // Read one byte past the cap: a handler may be growing the file while we read.
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (true) {
    if (done == data.size()) {
      if (data.size() > max_file_bytes_) break;
      data.resize(std::min<uint64_t>(max_file_bytes_ + 1, data.size() + (64 << 10)));
    }
    ssize_t n = pread(file.get(), data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) KJ_FAIL_SYSCALL("read from the scratch space", errno, quoted(path));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  KJ_REQUIRE(done <= max_file_bytes_, "getFile: the file is over the size cap", done,
             max_file_bytes_);
  return data;
}

}  // namespace wisp::agent
