// The wisp-vmm command line the manager builds for a function VM.
#include "manager/vm_spec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/self_exe.h"
#include "manager/agent_vm.h"
#include "manager/vmm_pool.h"
#include "tests/unit/expect_error.h"

namespace wisp::manager {
namespace {

using Args = std::vector<std::string>;
using wisp::testutil::expect_error;

TEST(VmSpec, DefaultsToTheAgentInitramfsAndAQuietConsoleLessGuest) {
  VmSpec spec;
  std::string initrd = self_dir() + "/../guest/agent-initramfs.cpio.gz";
  EXPECT_EQ(default_agent_initrd(), initrd);
  EXPECT_EQ(vmm_run_args(spec, "/r/vsock.sock", ""),
            (Args{"run", "--vsock-uds", "/r/vsock.sock", "--console", "none", "--initrd", initrd,
                  "--cmdline", "quiet"}));
  EXPECT_EQ(describe_guest(spec), "default kernel, initrd " + initrd);
}

TEST(VmSpec, EveryOptionInOrder) {
  VmSpec spec;
  spec.kernel = "k";
  spec.rootfs = "root.ext4";
  spec.cmdline = "x=1";
  spec.mem_bytes = 512ull << 20;
  spec.vcpus = 2;
  spec.drives = {"a.img", "b.img,ro"};
  spec.rng = false;
  spec.huge_pages = false;
  spec.portable = true;
  spec.vsock_cid = "7";
  spec.console = "c.log";
  spec.verbose = 2;
  spec.timings = true;
  EXPECT_EQ(vmm_run_args(spec, "s", "ctl"), (Args{"run",        "--vsock-uds", "s",
                                                  "--console",  "c.log",       "--control-socket",
                                                  "ctl",        "--kernel",    "k",
                                                  "--rootfs",   "root.ext4",   "--mem",
                                                  "512",        "--vcpus",     "2",
                                                  "--drive",    "a.img",       "--drive",
                                                  "b.img,ro",   "--no-rng",    "--no-hugepages",
                                                  "--portable", "--vsock-cid", "7",
                                                  "--cmdline",  "quiet x=1",   "--verbose",
                                                  "--verbose",  "--timings"}));
  EXPECT_EQ(describe_guest(spec), "k, rootfs root.ext4");  // a rootfs: no default initrd
}

TEST(VmSpec, AClonesNicsFollowItsDrives) {
  VmNet net;
  net.nets = {"tap=wtap0,ip=10.0.0.2/24", "tap=wtap1"};
  Args args = vmm_restore_args("/t/snapshot", {"/img,ro"}, net, "/r/v.sock", "/r/c.sock",
                               JailFlags{}, "/r");
  EXPECT_EQ(Args(args.begin(), args.begin() + 14),
            (Args{"restore", "/t/snapshot", "--vsock-uds", "/r/v.sock", "--console", "none",
                  "--control-socket", "/r/c.sock", "--drive", "/img,ro", "--net",
                  "tap=wtap0,ip=10.0.0.2/24", "--net", "tap=wtap1"}));
  Args none = vmm_restore_args("/t/snapshot", {}, VmNet{}, "/r/v.sock", "", JailFlags{}, "/r");
  EXPECT_EQ(std::count(none.begin(), none.end(), "--net"), 0);
}

TEST(VmSpec, AStandbyBootsNoNic) {
  VmSpec spec;
  spec.mem_bytes = 256ull << 20;
  spec.vcpus = 1;
  EXPECT_EQ(StandbyVmm::why_not_boot(spec, StandbyClass{}, JailFlags{}), "");
  spec.nets = {"tap=wtap0"};
  EXPECT_NE(StandbyVmm::why_not_boot(spec, StandbyClass{}, JailFlags{}).find("a NIC"),
            std::string::npos);
}

TEST(VmSpec, ARawCommandLineIsTheUsersAlone) {
  VmSpec spec;
  spec.initrd = "i";
  spec.raw_cmdline = true;
  EXPECT_EQ(vmm_run_args(spec, "s", ""), (Args{"run", "--vsock-uds", "s", "--console", "none",
                                               "--initrd", "i", "--raw-cmdline"}));
  spec.cmdline = "console=ttyS0";
  Args args = vmm_run_args(spec, "s", "");
  EXPECT_EQ(Args(args.end() - 3, args.end()),
            (Args{"--raw-cmdline", "--cmdline", "console=ttyS0"}));
}

TEST(VmSpec, MissingGuestFilesAreNamedWithHowToBuildThem) {
  VmSpec spec;
  spec.initrd = "/nonexistent/agent.cpio.gz";
  expect_error([&] { check_guest_files(spec); }, {"/nonexistent/agent.cpio.gz", "make guest"});
  spec.rootfs = "/nonexistent/root.ext4";
  expect_error([&] { check_guest_files(spec); }, {"/nonexistent/root.ext4", "make rootfs"});
  spec = VmSpec{};
  spec.initrd = "/dev/null";
  spec.kernel = "/nonexistent/vmlinux";
  expect_error([&] { check_guest_files(spec); }, {"/nonexistent/vmlinux"});
}

}  // namespace
}  // namespace wisp::manager
