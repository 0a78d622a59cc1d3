// Directories the manager creates and removes: a VM's private runtime directory (its sockets
// and log) and the helpers the template store builds on.
#pragma once

#include <string>

#include "base/file_io.h"  // remove_tree

namespace wisp::manager {

// A private directory for one VM's sockets and log, removed with everything in it on
// destruction. Unix socket paths are limited to 108 bytes, so it lives in $TMPDIR or /tmp,
// not in the template store.
class RuntimeDir {
 public:
  // Creates $TMPDIR/PREFIX-XXXXXX (mode 0700). Throws Error naming the directory.
  explicit RuntimeDir(const std::string& prefix);
  ~RuntimeDir();
  RuntimeDir(const RuntimeDir&) = delete;
  RuntimeDir& operator=(const RuntimeDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// mkdtemp(3) on `pattern` (ending in XXXXXX). Returns the directory. Throws Error.
std::string make_temp_dir(const std::string& pattern);
// Creates every missing directory of `path` (mode 0755). Throws Error.
void make_dirs(const std::string& path);

}  // namespace wisp::manager
