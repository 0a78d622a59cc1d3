// Booting wisp-agent from a root filesystem image (`wisp run --rootfs IMAGE`) instead of an
// initramfs: the image (built by guest/build-rootfs.sh) becomes the first virtio-blk drive,
// read-only, and the kernel mounts it as / and runs the agent from it. The agent then puts a
// tmpfs overlay on top (agent/root_overlay.h), so the image is never written and can be shared
// by every VM and clone.
#pragma once

#include <string>

#include "vmm/machine/machine.h"

namespace wisp {

// Where guest/build-rootfs.sh installs wisp-agent inside the image.
inline constexpr const char* kRootfsAgentPath = "/usr/sbin/wisp-agent";

// The kernel arguments that boot the rootfs on /dev/vda:
// "root=/dev/vda ro rootfstype=ext4 init=/usr/sbin/wisp-agent".
std::string rootfs_kernel_args();

// Attaches `image` read-only as the first drive (/dev/vda; drives already in `cfg` move up one
// letter) and inserts rootfs_kernel_args() into `cfg.cmdline` after wisp's defaults and before
// the user's extra arguments, which are `extra` (so a user's init= or root= wins: the kernel
// takes the last). `defaults` is wisp's default command line ("" with --raw-cmdline, which then
// gets no rootfs arguments either: the user owns the whole line).
void apply_rootfs(const std::string& image, const std::string& defaults, const std::string& extra,
                  bool raw_cmdline, MachineConfig* cfg);

}  // namespace wisp
