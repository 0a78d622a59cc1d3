#include "vmm/main/rootfs_boot.h"

namespace wisp {

std::string rootfs_kernel_args() {
  // ro: the drive is read-only anyway; mounting it ro keeps ext4 from even trying to write
  // (no orphan processing, no superblock updates). No rootwait: virtio-mmio drives are probed
  // before the root is mounted, and a missing one should panic with a clear message, not hang.
  return std::string("root=/dev/vda ro rootfstype=ext4 init=") + kRootfsAgentPath;
}

void apply_rootfs(const std::string& image, const std::string& defaults, const std::string& extra,
                  bool raw_cmdline, MachineConfig* cfg) {
  cfg->devices.insert(cfg->devices.begin(), BlockSpec{image, /*read_only=*/true});
  if (raw_cmdline) {
    cfg->cmdline = extra;
    return;
  }
  std::string line = defaults;
  for (const std::string& part : {rootfs_kernel_args(), extra}) {
    if (part.empty()) continue;
    if (!line.empty()) line += ' ';
    line += part;
  }
  cfg->cmdline = line;
}

}  // namespace wisp
