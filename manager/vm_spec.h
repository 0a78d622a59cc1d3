// How the manager boots a function VM (the agent guest): the machine a caller asks for, and
// the wisp-vmm command line that boots it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api/jail_flags.h"
#include "api/vm_limits.h"
#include "manager/host_net/vm_network.h"
#include "manager/vm_net.h"

namespace wisp::manager {

using ::wisp::kMaxGuestMemBytes;
using ::wisp::kMaxGuestVcpus;
using ::wisp::kMinGuestMemBytes;

struct VmSpec {
  std::string kernel;        // "": wisp-vmm's default kernel (<wisp>/../guest/vmlinux)
  std::string initrd;        // "" and no rootfs: the agent initramfs (default_agent_initrd())
  std::string rootfs;        // an ext4 image with wisp-agent as init, attached read-only
  std::string cmdline;       // appended to "quiet" (after wisp-vmm's own defaults)
  bool raw_cmdline = false;  // `cmdline` is the whole kernel command line
  uint64_t mem_bytes = 0;    // 0: wisp-vmm's default
  uint32_t vcpus = 0;        // 0: wisp-vmm's default
  std::vector<std::string> drives;  // "PATH[,ro]" as `wisp run --drive` takes them, in order
  std::vector<std::string> nets;    // "tap=NAME[,...]" as `wisp-vmm run --net` takes them
  VmNetworkSpec network;            // bare --net (its NIC comes before those of `nets`)
  bool rng = true;
  bool huge_pages = true;        // false: --no-hugepages (guest RAM on 4 KiB pages)
  bool portable = false;         // --portable: the x86-64-v2 baseline CPU
  std::string vsock_cid;         // "": wisp-vmm's default (3)
  std::string console = "none";  // none or a file to write the console to
  int verbose = 0;               // VMM diagnostics in its log (1: info, 2: debug)
  bool timings = false;          // the VMM's --timings line in its log
  JailFlags jail;                // how the VMM is jailed (default: fully)
};

// <wisp>/../guest/vmlinux: wisp-vmm's default kernel (it is wisp's sibling).
std::string default_kernel();

// <wisp>/../guest/agent-initramfs.cpio.gz: the agent guest `make` builds.
std::string default_agent_initrd();

// The initrd the VM boots with: `spec.initrd`, or the default agent initramfs when neither an
// initrd nor a rootfs is given.
std::string effective_initrd(const VmSpec& spec);

// Throws Error naming the first guest file of `spec` that does not exist, and how to build it.
void check_guest_files(const VmSpec& spec);

// "default kernel, initrd PATH" or "KERNEL, rootfs IMAGE": what a template was booted from.
std::string describe_guest(const VmSpec& spec);

// What `spec` adds to the kernel command line (`wisp-vmm run --cmdline`; all of it with
// raw_cmdline): wisp-vmm puts its defaults and the rootfs arguments before it. A standby's boot
// order carries the same (manager/vmm_pool.h).
std::string vmm_cmdline(const VmSpec& spec);

// The network `spec` asks for (VmNetwork::create with its allow-list), or null when it asks
// for none of its own. The VMM child that gets it owns it (VmmChild). Throws Error.
std::unique_ptr<host_net::VmNetwork> make_vm_network(const VmNetworkSpec& spec);

// The arguments of `wisp-vmm run` for `spec`, with its vsock bridged to `vsock_uds` and, if
// not empty, a control socket at `control_socket`.
std::vector<std::string> vmm_run_args(const VmSpec& spec, const std::string& vsock_uds,
                                      const std::string& control_socket);

}  // namespace wisp::manager
