// `wisp-vmm restore` (what `wisp snapshot restore` runs): a VM restored from a snapshot
// directory, run until it powers off or is stopped. The VMM `wisp invoke` spawns for a clone.
#pragma once

#include <cstdint>

namespace wisp {

// argv[0] is "restore". `t0_ns`: the process start the --timings figures count from.
int restore_command(int argc, char** argv, uint64_t t0_ns);

}  // namespace wisp
