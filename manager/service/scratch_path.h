// The paths a caller may give for a file in a sandbox's scratch space (Sandbox.putFile/getFile):
// relative, without "." or ".." components, no NUL, at most kMaxScratchPath bytes. The agent
// checks again (and does not follow symlinks); serve refuses a bad one before it costs a call.
#pragma once

#include <cstddef>
#include <string>

namespace wisp::service {

inline constexpr size_t kMaxScratchPath = 4096;

// "" when `path` is acceptable, else why not.
std::string scratch_path_problem(const std::string& path);

}  // namespace wisp::service
