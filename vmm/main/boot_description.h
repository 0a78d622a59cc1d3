// The machine a boot makes, as `wisp-vmm run` takes it from its options and a standby VMM from
// a boot order (api/standby_order.h): the drives, the root filesystem, rng, vsock and the
// user's part of the command line. One step turns it into the MachineConfig's devices and
// command line, so a standby boots exactly the machine run would.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vmm/machine/machine.h"
#include "vmm/virtio/net/net_state.h"

namespace wisp {

struct BootDescription {
  std::vector<BlockSpec> drives;  // in slot order, after the rootfs if there is one
  std::string rootfs;             // "" or an image attached read-only as /dev/vda (rootfs_boot.h)
  std::string extra_cmdline;      // appended to wisp's defaults (run's --cmdline)
  bool raw_cmdline = false;       // extra_cmdline is the whole line
  bool rng = true;
  std::optional<VsockSpec> vsock;
  std::vector<NetOption> nets;  // after vsock in slot order; their guest addresses go on the
                                // command line (not with raw_cmdline)
};

// Sets cfg->devices (rootfs, drives, rng, vsock, nets: the slot order) and cfg->cmdline.
void apply_boot_description(const BootDescription& boot, MachineConfig* cfg);

}  // namespace wisp
