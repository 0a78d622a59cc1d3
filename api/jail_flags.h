// The jail options of every command that starts a VM (`wisp run`, `wisp exec`, `wisp snapshot
// restore`, `wisp template create`, `wisp invoke`), declared once: the CLI parses them, the
// manager passes them on to wisp-vmm, and wisp-vmm parses them again into its jail's config.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/options.h"

namespace wisp {

struct JailFlags {
  bool jail = true;    // --no-jail: run the VMM unconfined (debugging only)
  bool cgroup = true;  // --no-cgroup: no cgroup for the VMM (debugging only)
  // --jail-uid-range FIRST-LAST: the uids (and equal gids) VMs run as; none: the default.
  std::optional<uint32_t> uid_first, uid_last;
  std::optional<uint32_t> cpu_quota_percent;  // --cpu-quota PERCENT: cpu.max, 100 = one CPU
  std::optional<uint64_t> memory_max;         // --jail-memory-max SIZE: test switch (memory.max)
};

// --jail-uid-range's value: "FIRST-LAST", two decimal uids, 0 < FIRST <= LAST < 4294967295,
// not including 65534 (nobody). Throws UsageError naming the flag.
void parse_uid_range(const std::string& text, uint32_t* first, uint32_t* last);

// Declares the options above on `parser`, into `flags`.
void add_jail_options(OptionParser& parser, JailFlags* flags);

// The help lines for add_jail_options (the test switch is not listed).
extern const char kJailOptionsHelp[];

// `flags` as wisp-vmm arguments ("--no-jail", "--jail-uid-range", "N-M", ...): what was given.
std::vector<std::string> jail_args(const JailFlags& flags);

// Prints the warning of a debugging flag (--no-jail, --no-cgroup) to stderr; once per
// process is enough (wisp-vmm calls it).
void warn_debug_jail_flags(const JailFlags& flags);

}  // namespace wisp
