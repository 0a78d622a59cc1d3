// `wisp run --rootfs IMAGE`: the image becomes the first drive, read-only, and the kernel
// command line gets the arguments that mount it as / and run wisp-agent from it.
#include "vmm/main/rootfs_boot.h"

#include <gtest/gtest.h>

#include "vmm/main/boot_description.h"

namespace wisp {
namespace {

TEST(RootfsBoot, KernelArgsMountTheFirstDriveReadOnlyAndRunTheAgent) {
  EXPECT_EQ(rootfs_kernel_args(), "root=/dev/vda ro rootfstype=ext4 init=/usr/sbin/wisp-agent");
}

TEST(RootfsBoot, ImageIsTheFirstDriveAndReadOnly) {
  MachineConfig cfg;
  cfg.devices = {BlockSpec{"data.img", false}, RngSpec{}};
  apply_rootfs("root.ext4", "console=ttyS0", "", false, &cfg);
  ASSERT_EQ(cfg.devices.size(), 3u);
  EXPECT_EQ(std::get<BlockSpec>(cfg.devices[0]).path, "root.ext4");
  EXPECT_TRUE(std::get<BlockSpec>(cfg.devices[0]).read_only);
  EXPECT_EQ(std::get<BlockSpec>(cfg.devices[1]).path, "data.img");  // now /dev/vdb
  EXPECT_FALSE(std::get<BlockSpec>(cfg.devices[1]).read_only);
  EXPECT_TRUE(std::holds_alternative<RngSpec>(cfg.devices[2]));
}

TEST(RootfsBoot, ArgsGoBetweenDefaultsAndTheUsersExtra) {
  MachineConfig cfg;
  apply_rootfs("r.ext4", "console=ttyS0 panic=-1", "quiet init=/bin/sh", false, &cfg);
  // The user's init= comes last, so it wins.
  EXPECT_EQ(cfg.cmdline,
            "console=ttyS0 panic=-1 root=/dev/vda ro rootfstype=ext4 init=/usr/sbin/wisp-agent "
            "quiet init=/bin/sh");
}

TEST(RootfsBoot, NoExtraNoTrailingSpace) {
  MachineConfig cfg;
  apply_rootfs("r.ext4", "console=ttyS0", "", false, &cfg);
  EXPECT_EQ(cfg.cmdline, "console=ttyS0 " + rootfs_kernel_args());
  apply_rootfs("r.ext4", "", "", false, &cfg);
  EXPECT_EQ(cfg.cmdline, rootfs_kernel_args());
}

TEST(RootfsBoot, RawCmdlineIsTheWholeLine) {
  MachineConfig cfg;
  apply_rootfs("r.ext4", "console=ttyS0", "root=/dev/vda init=/x", true, &cfg);
  EXPECT_EQ(cfg.cmdline, "root=/dev/vda init=/x");
  ASSERT_EQ(cfg.devices.size(), 1u);
  EXPECT_TRUE(std::get<BlockSpec>(cfg.devices[0]).read_only);
}

}  // namespace
}  // namespace wisp

namespace wisp {
namespace {

// --net: the NIC takes the slot after vsock, its guest address goes before the user's part of
// the command line (not with --raw-cmdline).
TEST(BootDescriptionNet, NicAfterVsockAndItsAddressOnTheCommandLine) {
  BootDescription boot;
  boot.vsock = VsockSpec{"/run/v.sock", 3};
  boot.nets = {parse_net_option("tap=tap7,ip=10.1.2.3/16,gw=10.1.0.1")};
  boot.extra_cmdline = "user=1";
  MachineConfig cfg;
  apply_boot_description(boot, &cfg);
  ASSERT_EQ(cfg.devices.size(), 3u);  // rng, vsock, net
  EXPECT_EQ(std::get<NetSpec>(cfg.devices[2]).tap_name, "tap7");
  EXPECT_NE(cfg.cmdline.find("wisp.net=10.1.2.3/16,10.1.0.1,1500 user=1"), std::string::npos)
      << cfg.cmdline;
  boot.raw_cmdline = true;
  apply_boot_description(boot, &cfg);
  EXPECT_EQ(cfg.cmdline, "user=1");
}

}  // namespace
}  // namespace wisp
