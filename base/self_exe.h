// Where this executable lives: wisp finds its sibling binaries (wisp-vmm) and the default
// guest files (<dir>/../guest/) relative to it, so a build tree or an install works alike.
#pragma once

#include <string>

namespace wisp {

// Absolute path of this executable ("/proc/self/exe" if it cannot be read).
std::string self_exe();
// The directory of this executable ("." if it cannot be read).
std::string self_dir();
// The executable `name` in the same directory as this one.
std::string sibling_executable(const std::string& name);

}  // namespace wisp
