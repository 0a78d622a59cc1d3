// The jail of a wisp-vmm command: its options (api/jail_flags.h plus --jail-dir), and the
// JailConfig for the machine it is about to build: what the VM's root exposes (its kernel,
// initrd, drives, console file, socket directories, /dev/kvm; or a snapshot's files), its
// limits, and the thread hooks that put each thread's seccomp filter on.
#pragma once

#include <string>
#include <vector>

#include "api/jail_flags.h"
#include "base/options.h"
#include "vmm/jail/jail.h"
#include "vmm/machine/machine.h"

namespace wisp {

struct VmmJailOptions {
  JailFlags flags;
  std::string dir;           // --jail-dir DIR: the VM's runtime directory (its root is DIR/root)
  int parent_fd = -1;        // --parent-fd N: the VM ends when this pipe hangs up (JailConfig)
  int netns_fd = -1;         // --netns-fd N: the VM's own network namespace (enter_vm_netns)
  bool in_vm_netns = false;  // enter_vm_netns() moved this process into it
};

// add_jail_options plus --jail-dir and --parent-fd.
void add_vmm_jail_options(OptionParser& parser, VmmJailOptions* options);
extern const char kVmmJailOptionsHelp[];

// With --netns-fd: moves this process into that network namespace and closes the descriptor,
// before any TAP is opened (a TAP is looked up by name in the caller's namespace); the jail
// then keeps the VMM in it instead of unsharing an empty one. Throws Error.
void enter_vm_netns(VmmJailOptions* options);

// The jail for a machine described by `cfg`, plus `extra_files` (read-only: a snapshot's
// files). `keep_fds`: inherited descriptors the VMM still uses (--ready-fd). Makes the paths
// in `cfg` absolute (the jailed VMM starts in its root's /), and creates the console file when
// there is one, so it can be mounted into the root. Throws Error.
jail::JailConfig vmm_jail_config(const VmmJailOptions& options, MachineConfig* cfg,
                                 const std::vector<std::string>& extra_files,
                                 std::vector<int> keep_fds);

// Hooks `confinement` into `cfg`: each thread of the running machine enters it.
void confine_threads(jail::Confinement& confinement, MachineConfig* cfg);

}  // namespace wisp
