#include "manager/runtime_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "base/error.h"
#include "manager/runtime_sweep.h"

namespace wisp::manager {

RuntimeDir::RuntimeDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = tmp && *tmp ? tmp : "/tmp";
  sweep_dead_runtime_dirs(base);
  owner_ = make_locked_temp_dir(base + "/" + prefix + "-XXXXXX", &path_);
  try {
    mark_runtime_dir(owner_.get(), path_);
  } catch (const Error&) {
    ::rmdir(path_.c_str());
    throw;
  }
}

RuntimeDir::~RuntimeDir() {
  try {
    remove_tree(path_);
  } catch (const Error&) {
    // Nothing to do from a destructor: a leftover temp dir is harmless.
  }
}

void make_dirs(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string p = path.substr(0, pos);
    if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("create directory " + p);
  }
  // EEXIST also covers a file where the last directory should be.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_errno("create directory " + path);
  if (!S_ISDIR(st.st_mode)) throw Error("create directory " + path + ": a file is in the way");
}

}  // namespace wisp::manager
