// wisp's one error model for host-side failures (bad config, missing file, a KVM ioctl that
// failed): throw wisp::Error with a message a person can act on. Guest faults are never thrown
// across the VMM; devices count and contain them instead (see DESIGN.md rule 3).
#pragma once

#include <stdexcept>
#include <string>

namespace wisp {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builds "what: strerror(errno)" from the current errno. Call right after the failing syscall.
std::string errno_message(const std::string& what);

// Throws Error(errno_message(what)).
[[noreturn]] void throw_errno(const std::string& what);

}  // namespace wisp
