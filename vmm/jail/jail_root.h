// The jailed VMM's filesystem: a small read-only tmpfs holding only the files the VM needs,
// each bind-mounted at its own host path (so the VMM's paths stay valid), then pivot_root into
// it. Called in the jail's child, which has a mount namespace of its own; nothing here is seen
// by the host.
#pragma once

#include <string>
#include <vector>

#include "vmm/jail/jail.h"

namespace wisp::jail {

// Mounts the root at `root` (an existing empty directory), exposes `exposed` in it and makes it
// this process's `/`; the host's tree is detached. A /proc showing only this pid namespace is
// mounted for the VMM's set-up; leave_proc() detaches it. Throws Error naming the path that
// failed.
void enter_root(const std::string& root, const std::vector<Exposed>& exposed);

// Detaches the set-up /proc (once the VMM holds what it needed from it). Throws Error.
void leave_proc();

}  // namespace wisp::jail
