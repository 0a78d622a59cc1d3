#include "manager/runtime_sweep.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "manager/runtime_dir.h"

namespace wisp::manager {
namespace {

constexpr const char* kMarker = ".wisp-runtime-dir";

// A marked directory `name` in `base` that no live process holds: its lock, now ours.
UniqueFd claim_dead(int base_fd, const char* name) {
  UniqueFd dir(::openat(base_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return {};
  struct stat st;
  if (::fstat(dir.get(), &st) != 0 || st.st_uid != ::geteuid()) return {};
  if (::faccessat(dir.get(), kMarker, F_OK, AT_SYMLINK_NOFOLLOW) != 0) return {};
  if (::flock(dir.get(), LOCK_EX | LOCK_NB) != 0) return {};
  return dir;
}

}  // namespace

void mark_runtime_dir(int dir_fd, const std::string& path) {
  UniqueFd marker(::openat(dir_fd, kMarker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!marker) throw_errno("create " + path + "/" + kMarker);
}

void sweep_dead_runtime_dirs(const std::string& base) {
  UniqueFd base_fd(::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!base_fd) return;
  DIR* d = ::fdopendir(::dup(base_fd.get()));
  if (!d) return;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (std::string_view(e->d_name).starts_with("wisp-") &&
        (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN))
      names.push_back(e->d_name);
  ::closedir(d);
  for (const std::string& name : names) {
    UniqueFd lock = claim_dead(base_fd.get(), name.c_str());
    if (!lock) continue;
    try {
      remove_tree(base + "/" + name);
    } catch (const Error&) {
      // Left for the next sweep.
    }
  }
}

}  // namespace wisp::manager
