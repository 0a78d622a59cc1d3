#include "base/file_io.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>

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

}  // namespace wisp
