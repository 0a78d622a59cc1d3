// `wisp-vmm run` (what `wisp run` runs): boot a kernel with a console, like `lkvm run` or
// `firectl`. Also the VMM the manager spawns for `wisp exec` and `wisp template create`.
#pragma once

#include <cstdint>

namespace wisp {

// argv[0] is "run". `t0_ns`: the process start the --timings figures count from.
int run_command(int argc, char** argv, uint64_t t0_ns);

}  // namespace wisp
