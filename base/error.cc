#include "base/error.h"

#include <cerrno>
#include <cstring>

namespace wisp {

std::string errno_message(const std::string& what) {
  int saved = errno;
  return what + ": " + std::strerror(saved);
}

void throw_errno(const std::string& what) { throw Error(errno_message(what)); }

}  // namespace wisp
