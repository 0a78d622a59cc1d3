// The handler sandbox an exec-mode template's calls run in, recorded in its template.info: a
// root drive, working directory, user and limits (a container's: shim/snapshot_start.h makes
// such templates). Its clones' calls must ask for exactly this sandbox, for two reasons: the
// snapshot holds a sandbox pre-forked for it (a call asking for another one takes the slow
// path), and a call that names no sandbox would otherwise run in the guest's own root as
// nobody, not in the container's root. So every caller that builds a call from template.info
// (invoke_request_for: `wisp invoke`, serve) applies it.
//
// Lines (absent when the template has none, as in templates from before them):
//   sandbox_root /dev/vdX           the read-only ext4 drive that is the root ("" = the guest's)
//   sandbox_cwd PATH                absolute; the line is absent for ""
//   sandbox_ids UID GID [G1,G2...]  the process's user, group and additional groups
//   sandbox_limits MEM PIDS CPU_MS FILES
// template.info is checksummed, but a store can be shared between hosts: each value is checked
// as serve checks an ExecSandbox (manager/service/exec_sandbox.h), with an error naming it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "api/agent_client.h"

namespace wisp::manager {

// The sandbox fields of a client::Handler (its name, argv, env and network are not part of it).
struct TemplateSandbox {
  std::string root_device;
  std::string cwd;
  uint32_t uid = 65534, gid = 65534;
  std::vector<uint32_t> additional_gids;
  client::Limits limits;
};

// The sandbox of `h`, or false when `h` asks for none beyond the defaults (the guest's root,
// nobody, default limits): such a template records no sandbox lines.
bool template_sandbox_of(const client::Handler& h, TemplateSandbox* out);
// Sets `h`'s sandbox fields to `s`.
void apply_template_sandbox(const TemplateSandbox& s, client::Handler* h);

// Calls `line(key, value)` for each of the lines above.
void format_template_sandbox(
    const TemplateSandbox& s,
    const std::function<void(const std::string&, const std::string&)>& line);
// Parses one line's value into `out` when `key` is a sandbox key (returns false otherwise).
// Throws Error("KEY: ...") for a bad value.
bool parse_template_sandbox_line(const std::string& key, const std::string& value,
                                 TemplateSandbox* out);

}  // namespace wisp::manager
