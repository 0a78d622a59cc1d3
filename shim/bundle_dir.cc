#include "shim/bundle_dir.h"

#include <unistd.h>

#include <climits>

#include "base/error.h"

namespace wisp::shim {

std::string bundle_dir(const ShimOptions& options) {
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) throw_errno("getcwd");
  if (options.bundle.empty()) return cwd;
  if (options.bundle[0] == '/') return options.bundle;
  return std::string(cwd) + "/" + options.bundle;
}

}  // namespace wisp::shim
