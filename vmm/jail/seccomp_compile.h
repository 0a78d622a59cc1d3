// A thread kind's seccomp allow-list compiled to the classic BPF program the kernel loads, by
// libseccomp from the tables in seccomp_<kind>_table.cc. The build runs this once
// (seccomp_programs_gen.cc) so that a VMM's threads load ready programs: compiling the four at
// each VMM's start cost it ~5-12 ms of CPU on the testbed, on the path of every restore.
// Firecracker's seccompiler does the same (its filters are compiled when it is built).
#pragma once

#include <linux/filter.h>

#include <vector>

#include "vmm/jail/seccomp_filter.h"

namespace wisp::jail {

// `kind`'s filter in `mode`, as libseccomp compiles it (its architecture check included).
// Throws Error for a table entry libseccomp refuses.
std::vector<sock_filter> compile_filter(ThreadKind kind, SeccompMode mode);

// The number of syscall `name` on this architecture ("openat"). Throws Error for an unknown
// name.
int resolve_syscall(const char* name);

}  // namespace wisp::jail
