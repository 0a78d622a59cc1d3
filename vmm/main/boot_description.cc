#include "vmm/main/boot_description.h"

#include "vmm/main/rootfs_boot.h"

namespace wisp {

// GCC 12 at -O2 warns that a moved std::variant's string "may be used uninitialized" when the
// vector grows (a known false positive with variants of strings); this function alone builds one.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
void apply_boot_description(const BootDescription& boot, MachineConfig* cfg) {
  std::vector<DeviceSpec> devices(boot.drives.begin(), boot.drives.end());
  if (boot.rng) devices.push_back(RngSpec{});
  if (boot.vsock) devices.push_back(*boot.vsock);
  cfg->devices = std::move(devices);
  if (!boot.rootfs.empty()) {
    apply_rootfs(boot.rootfs, default_kernel_cmdline(), boot.extra_cmdline, boot.raw_cmdline, cfg);
    return;
  }
  const std::string& extra = boot.extra_cmdline;
  cfg->cmdline =
      boot.raw_cmdline ? extra : default_kernel_cmdline() + (extra.empty() ? "" : " " + extra);
}
#pragma GCC diagnostic pop

}  // namespace wisp
