#include "vmm/main/standby_boot.h"

#include "base/error.h"
#include "base/options.h"
#include "vmm/main/boot_description.h"
#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/vsock/vsock_muxer.h"

namespace wisp {

void configure_boot(const standby::BootOrder& order, std::vector<UniqueFd>& fds,
                    const std::string& vsock_uds, MachineConfig* cfg) {
  uint64_t mem = uint64_t{order.mem_mib} << 20;
  if (mem > cfg->mem_bytes || order.vcpus > cfg->vcpus)
    throw Error("the boot order's machine (" + format_size(mem) + ", " +
                std::to_string(order.vcpus) + " vCPUs) is larger than this standby's class (" +
                format_size(cfg->mem_bytes) + ", " + std::to_string(cfg->vcpus) + " vCPUs)");
  if (fds.size() != order.fd_count())
    throw Error("the boot order came with " + std::to_string(fds.size()) + " descriptors, " +
                std::to_string(order.fd_count()) + " expected");
  cfg->mem_bytes = mem;
  cfg->vcpus = order.vcpus;
  cfg->huge_pages = order.huge_pages;
  cfg->cpu_model = order.portable ? CpuModel::kX86_64_v2 : CpuModel::kHost;
  size_t next = 0;
  cfg->kernel_path = kOrderKernelName;
  cfg->kernel_fd = fds[next++].get();
  cfg->initrd_path.clear();
  cfg->initrd_fd = -1;
  if (order.initrd) {
    cfg->initrd_path = kOrderInitrdName;
    cfg->initrd_fd = fds[next++].get();
  }
  BootDescription boot;
  for (size_t i = 0; i < order.drive_read_only.size(); ++i) {
    // A name the block backend finds its descriptor by; nothing is opened by it.
    std::string name = "/boot-order/drive" + std::to_string(i);
    provide_drive_fd(name, std::move(fds[next++]));
    if (i == 0 && order.rootfs)
      boot.rootfs = name;
    else
      boot.drives.push_back(BlockSpec{name, static_cast<bool>(order.drive_read_only[i])});
  }
  boot.extra_cmdline = order.cmdline;
  boot.raw_cmdline = order.raw_cmdline;
  boot.rng = order.rng;
  if (!vsock_uds.empty()) {
    VsockSpec vsock;
    vsock.uds_path = vsock_uds;
    validate_vsock_config(vsock);
    boot.vsock = vsock;
  }
  apply_boot_description(boot, cfg);
}

}  // namespace wisp
