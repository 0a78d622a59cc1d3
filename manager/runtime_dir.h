// Directories the manager creates and removes: a VM's private runtime directory (its sockets
// and log) and the helpers the template store builds on.
#pragma once

#include <string>

#include "base/file_io.h"  // remove_tree
#include "base/unique_fd.h"

namespace wisp::manager {

// A private directory for one VM's sockets and log, removed with everything in it on
// destruction. Unix socket paths are limited to 108 bytes, so it lives in $TMPDIR or /tmp,
// not in the template store. It is locked while this object lives, so that one its process
// left behind (killed) is removed by the next RuntimeDir made there (runtime_sweep.h).
class RuntimeDir {
 public:
  // Removes dead owners' directories, then creates $TMPDIR/PREFIX-XXXXXX (mode 0700).
  // Throws Error naming the directory.
  explicit RuntimeDir(const std::string& prefix);
  ~RuntimeDir();
  RuntimeDir(const RuntimeDir&) = delete;
  RuntimeDir& operator=(const RuntimeDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
  UniqueFd owner_;  // the directory, flock'ed: this process owns it
};

// Creates every missing directory of `path` (mode 0755). Throws Error.
void make_dirs(const std::string& path);

}  // namespace wisp::manager
