// Runs a host tool (mkfs.ext4 for the shim's root filesystems and a template's CRIU image
// drive) to its end and collects what it printed: the one place wisp's host side forks a
// helper program and waits for it.
#pragma once

#include <string>
#include <vector>

namespace wisp {

// Runs `argv` (argv[0] looked up in PATH), stdin from /dev/null, stdout and stderr together
// into the returned string. Throws Error "WHAT failed (status N): <the tail of its output>"
// when it does not exit 0, or "WHAT: ARGV0 not found: install PACKAGE" when it cannot run.
std::string run_tool(const std::vector<std::string>& argv, const std::string& what,
                     const std::string& package);

}  // namespace wisp
