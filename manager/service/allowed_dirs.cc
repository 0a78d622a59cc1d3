#include "manager/service/allowed_dirs.h"

#include <limits.h>
#include <stdlib.h>

#include "base/error.h"
#include "base/self_exe.h"
#include "manager/template_store.h"

namespace wisp::service {
namespace {

// realpath(3), or "" when the path does not resolve.
std::string resolve(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return "";
  return buf;
}

}  // namespace

bool path_is_under(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.empty()) return false;
  if (dir == "/") return path[0] == '/';
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

AllowedDirs::AllowedDirs(std::vector<std::string> dirs) {
  if (dirs.empty()) dirs = {manager::wisp_home(), self_dir() + "/../guest"};
  for (const std::string& d : dirs) {
    std::string r = resolve(d);
    dirs_.push_back(r.empty() ? d : r);
  }
}

std::string AllowedDirs::check(const std::string& field, const std::string& path) const {
  if (path.empty()) throw Error("bad-request: " + field + ": empty path");
  if (path[0] != '/')
    throw Error("bad-request: " + field + " '" + path +
                "': must be an absolute path (serve's working directory is not the caller's)");
  std::string r = resolve(path);
  if (r.empty()) throw Error(errno_message("bad-request: " + field + " '" + path + "'"));
  for (const std::string& d : dirs_)
    if (path_is_under(r, d)) return r;
  std::string list;
  for (const std::string& d : dirs_) list += (list.empty() ? "" : ", ") + d;
  throw Error("bad-request: " + field + " '" + path + "' (" + r +
              ") is not under an allowed directory (" + list + "; serve --allow-dir adds one)");
}

std::string AllowedDirs::check_drive(const std::string& field, const std::string& drive) const {
  size_t comma = drive.find(',');
  std::string path = check(field, drive.substr(0, comma));
  return path + (comma == std::string::npos ? "" : drive.substr(comma));
}

}  // namespace wisp::service
