#include "cli/cli_util.h"

#include <limits.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace wisp {

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "/proc/self/exe";
  return std::string(buf, static_cast<size_t>(n));
}

std::string self_dir() {
  std::string path = self_exe();
  if (path == "/proc/self/exe") return ".";
  return path.substr(0, path.rfind('/'));
}

double ms_since(unsigned long long t0_ns) {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  unsigned long long now = static_cast<unsigned long long>(ts.tv_sec) * 1000000000ull +
                           static_cast<unsigned long long>(ts.tv_nsec);
  return static_cast<double>(now - t0_ns) / 1e6;
}

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

}  // namespace wisp
