#include "base/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace wisp {

std::string read_all_fd(int fd) {
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

std::string read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("cannot read " + path);
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + path);
    if (n == 0) return data;
    data.append(buf, static_cast<size_t>(n));
  }
}

bool write_all(int fd, const std::string& data) {
  return write_all(fd, std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

bool write_all(int fd, std::span<const uint8_t> data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking descriptor (a shared pipe or terminal someone set O_NONBLOCK on): wait
      // until it takes more.
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR) return false;
      continue;
    }
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

namespace {

// The loop of pread_exact and pwrite_exact; `io` is ::pread or ::pwrite.
template <typename Byte, typename Io>
int positional_exact(int fd, uint64_t offset, std::span<Byte> buf, Io io) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = io(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;  // end of file inside the range: the file shrank
    done += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

int pread_exact(int fd, uint64_t offset, std::span<uint8_t> out) {
  return positional_exact(fd, offset, out, ::pread);
}

int pwrite_exact(int fd, uint64_t offset, std::span<const uint8_t> in) {
  return positional_exact(fd, offset, in, ::pwrite);
}

std::string absolute_path(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (!::getcwd(cwd, sizeof(cwd))) throw_errno("getcwd");
  return std::string(cwd) + "/" + path;
}

std::string canonical_path(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  if (errno != ENOENT) throw_errno(path);
  std::string abs = absolute_path(path);
  size_t slash = abs.find_last_of('/');
  std::string dir = slash == 0 ? "/" : abs.substr(0, slash);
  if (!::realpath(dir.c_str(), buf)) throw_errno(path);
  std::string base(buf);
  return (base == "/" ? "" : base) + abs.substr(slash);
}

void fsync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("open directory " + dir);
  if (::fsync(fd.get()) != 0) throw_errno("fsync directory " + dir);
}

namespace {

std::string dir_part(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) throw_errno("create " + tmp);
  if (!write_all(fd.get(), data) || ::fsync(fd.get()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    errno = e;
    throw_errno("write " + tmp);
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    errno = e;
    throw_errno("rename " + tmp + " to " + path);
  }
  fsync_dir(dir_part(path));
}

void rename_dir_noreplace(const std::string& from, const std::string& to, NoReplace how) {
  auto fail = [&]() {
    if (errno == EEXIST || errno == ENOTEMPTY) throw Error(to + " already exists");
    throw_errno("rename " + from + " to " + to);
  };
  if (how == NoReplace::kAuto) {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) fail();
  }
  // The claim: mkdir fails on anything already at `to`, and only the claimant renames over it.
  if (::mkdir(to.c_str(), 0700) != 0) fail();
  if (::rename(from.c_str(), to.c_str()) != 0) {
    int e = errno;
    ::rmdir(to.c_str());  // our empty claim; fails harmlessly if it is not empty
    errno = e;
    fail();
  }
}

namespace {

// Removes the entry `name` of the directory `parent_fd` and, for a directory, all below it.
// `shown` names it in messages.
void remove_entry(int parent_fd, const std::string& name, const std::string& shown) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (::unlinkat(parent_fd, name.c_str(), 0) == 0 || errno == ENOENT) return;
    if (errno != EISDIR && errno != EPERM) throw_errno("remove " + shown);
    int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return;
      if (errno == ELOOP || errno == ENOTDIR) continue;  // swapped for a non-directory: unlink it
      throw_errno("open directory " + shown);
    }
    DIR* d = ::fdopendir(fd);
    if (!d) {
      ::close(fd);
      throw_errno("open directory " + shown);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    try {
      for (const std::string& n : names) remove_entry(::dirfd(d), n, shown + "/" + n);
    } catch (...) {
      ::closedir(d);
      throw;
    }
    ::closedir(d);
    if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) return;
    throw_errno("remove directory " + shown);
  }
  throw Error("remove " + shown + ": it keeps changing between a directory and a file");
}

}  // namespace

void remove_tree(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.find_last_of('/');
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  if (name.empty() || name == "." || name == "..")
    throw Error("remove " + path + ": not a removable path");
  std::string parent = dir_part(p);
  UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) {
    if (errno == ENOENT) return;
    throw_errno("open directory " + parent);
  }
  remove_entry(parent_fd.get(), name, p);
}

UniqueFd lock_dir(const std::string& dir, bool shared) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw_errno("open directory " + dir);
  if (::flock(fd.get(), shared ? LOCK_SH : LOCK_EX) != 0) throw_errno("lock directory " + dir);
  return fd;
}

UniqueFd make_locked_temp_dir(const std::string& pattern, std::string* path) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw_errno("create a directory " + pattern);
    UniqueFd lock = lock_dir(buf.data());
    // A remove_if_unlocked between mkdtemp and the lock removed it: a removed directory has
    // no links left.
    struct stat st;
    if (::fstat(lock.get(), &st) != 0) throw_errno("stat " + std::string(buf.data()));
    if (st.st_nlink == 0) continue;
    *path = buf.data();
    return lock;
  }
  throw Error("create a directory " + pattern + ": removed as soon as made, again and again");
}

bool remove_if_unlocked(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return true;
    if (errno != ELOOP && errno != ENOTDIR) throw_errno("open directory " + dir);
    remove_tree(dir);  // not a directory: nobody works in it
    return true;
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return false;
    throw_errno("lock directory " + dir);
  }
  remove_tree(dir);
  return true;
}

}  // namespace wisp
