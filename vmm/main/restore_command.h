// `wisp-vmm restore` (what `wisp snapshot restore` runs): a VM restored from a snapshot
// directory, run until it powers off or is stopped. The VMM `wisp invoke` spawns for a clone.
#pragma once

#include <cstdint>
#include <string>

namespace wisp {

// argv[0] is "restore". `t0_ns`: the process start the --timings figures count from.
int restore_command(int argc, char** argv, uint64_t t0_ns);

// The line a restored VMM reports just before its vCPUs run (restore --ready-fd, standby's
// order socket): "ready LOADED_MS RESTORED_MS JAIL_MS\n", each counted from `t0_ns`.
std::string ready_line(uint64_t t0_ns, uint64_t loaded_ns, uint64_t ready_ns, double jail_ms);

}  // namespace wisp
