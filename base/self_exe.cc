#include "base/self_exe.h"

#include <limits.h>
#include <unistd.h>

namespace wisp {

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "/proc/self/exe";
  return std::string(buf, static_cast<size_t>(n));
}

std::string self_dir() {
  std::string path = self_exe();
  if (path == "/proc/self/exe") return ".";
  return path.substr(0, path.rfind('/'));
}

std::string sibling_executable(const std::string& name) { return self_dir() + "/" + name; }

}  // namespace wisp
