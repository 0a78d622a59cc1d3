// The host directories whose files a template spec that arrives over serve's API may name
// (kernel, initrd, root filesystem, drives): `--allow-dir DIR`, default WISP_HOME and wisp's
// own guest directory (<wisp>/../guest). A spec is untrusted input, and a VMM opens what it is
// given (DESIGN.md rule 9): without this a caller could have serve attach any file it can read.
#pragma once

#include <string>
#include <vector>

namespace wisp::service {

class AllowedDirs {
 public:
  // Canonicalises `dirs`; ones that do not exist are kept as given (they cannot match a file
  // that exists). Empty: the defaults above.
  explicit AllowedDirs(std::vector<std::string> dirs);

  // The canonical path of `path` (symlinks resolved, so a link cannot lead out) when it is
  // under an allowed directory. Throws wisp::Error "bad-request: FIELD: ..." when it is empty,
  // does not exist or lies elsewhere.
  std::string check(const std::string& field, const std::string& path) const;
  // A drive "PATH[,ro]": its path checked as above, the suffix kept.
  std::string check_drive(const std::string& field, const std::string& drive) const;
  const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  std::vector<std::string> dirs_;
};

// True when canonical `path` is `dir` or inside it (component-wise, so /a/bc is not in /a/b).
bool path_is_under(const std::string& path, const std::string& dir);

}  // namespace wisp::service
