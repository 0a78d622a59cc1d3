// Small helpers every wisp command uses: where this executable lives, elapsed time, reading
// a whole descriptor.
#pragma once

#include <string>

namespace wisp {

// Absolute path of this executable ("/proc/self/exe" if it cannot be read).
std::string self_exe();
// The directory of this executable ("." if it cannot be read): the default guest files are
// found relative to it (<dir>/../guest/).
std::string self_dir();
// Milliseconds from `t0_ns` (CLOCK_MONOTONIC) to now.
double ms_since(unsigned long long t0_ns);
// Everything `fd` yields until end of file (or an error).
std::string read_all_fd(int fd);

}  // namespace wisp
