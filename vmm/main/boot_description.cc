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
  std::string extra = boot.extra_cmdline;
  for (const NetOption& net : boot.nets) {
    devices.push_back(net.spec);
    // Before the user's part, so a --cmdline of their own can still override it.
    std::string word = net.guest.cmdline_word();
    if (!word.empty() && !boot.raw_cmdline) extra = word + (extra.empty() ? "" : " " + extra);
  }
  cfg->devices = std::move(devices);
  if (!boot.rootfs.empty()) {
    apply_rootfs(boot.rootfs, default_kernel_cmdline(), extra, boot.raw_cmdline, cfg);
    return;
  }
  cfg->cmdline =
      boot.raw_cmdline ? extra : default_kernel_cmdline() + (extra.empty() ? "" : " " + extra);
}
#pragma GCC diagnostic pop

}  // namespace wisp
