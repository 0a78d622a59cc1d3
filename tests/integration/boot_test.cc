// Boots real guests on KVM through `wisp run` (directly on kvm_intel/kvm_amd hosts, otherwise
// inside the nested-KVM testbed; see tests/integration/in-kvm).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "tests/integration/wisp_runner.h"

namespace wisp::testing {
namespace {

constexpr const char* kMarker = "wisp-guest: init ready";

TEST(Boot, DefaultGuestReachesInitAndPowersOff) {
  auto r = run_wisp({"--console", "stdio", "--cmdline", "wisp_action=poweroff"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find(kMarker), std::string::npos) << describe(r);
}

TEST(Boot, TwoVcpusAreSeenByTheGuest) {
  auto r = run_wisp({"--vcpus", "2", "--cmdline", "wisp_action=nproc"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("wisp-guest: nproc=2"), std::string::npos) << describe(r);
}

TEST(Boot, BzImageOfTheDefaultGuestBoots) {
  auto r = run_wisp({"--kernel", guest_file("bzImage"), "--initrd", guest_file("initramfs.cpio.gz"),
                     "--cmdline", "wisp_action=poweroff"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find(kMarker), std::string::npos) << describe(r);
}

TEST(Boot, StockDebianCloudKernelBootsToAConsole) {
  std::string kernel = guest_file("cloud/vmlinuz");
  struct stat st;
  ASSERT_EQ(stat(kernel.c_str(), &st), 0)
      << kernel << " missing: run tests/integration/fetch-cloud-kernel.sh build/guest/cloud";
  auto r = run_wisp({"--kernel", kernel, "--initrd", guest_file("initramfs.cpio.gz"), "--mem",
                     "512", "--vcpus", "2", "--cmdline", "quiet wisp_action=nproc"},
                    400);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("wisp-guest: nproc=2"), std::string::npos) << describe(r);
}

TEST(Boot, StockKernelPowersOffThroughAcpi) {
  // The stock kernel finds wisp's ACPI tables: poweroff -f writes S5 to the sleep control
  // register, which ends the VM as a power-off (not a reset).
  auto r = run_wisp(
      {"--kernel", guest_file("cloud/vmlinuz"), "--initrd", guest_file("initramfs.cpio.gz"),
       "--mem", "512", "--timings", "--cmdline", "quiet wisp_action=cmd wisp_cmd=\"poweroff -f\""},
      400);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("\"stop\":\"poweroff\""), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("reboot: Power down"), std::string::npos) << describe(r);
}

TEST(Boot, InteractiveShellOnTheSerialConsole) {
  // Input goes in only once the shell has printed its prompt: the driver clears the UART's
  // FIFO when it opens the port, like real hardware.
  auto r = run_wisp({"--cmdline", "quiet"}, 120,
                    {{"# ", "echo $((6*7))-answer\n"}, {"42-answer", "exit\n"}});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("42-answer"), std::string::npos) << describe(r);
}

TEST(Boot, GuestRebootEndsTheVmCleanly) {
  auto r = run_wisp({"--cmdline", "wisp_action=reboot"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("wisp-guest: reboot"), std::string::npos) << describe(r);
}

TEST(Boot, TripleFaultRebootEndsTheVmCleanly) {
  auto r = run_wisp({"--cmdline", "reboot=t wisp_action=reboot"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
}

TEST(Boot, GuestPanicIsDetectedAndReported) {
  auto r = run_wisp({"--cmdline", "wisp_action=panic"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("guest panicked"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("Attempted to kill init"), std::string::npos) << describe(r);
}

// ---- bad input: each gives a non-zero exit and a message naming what is wrong ----

std::string temp_file(const std::string& name, const std::string& content) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::string head_of(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  std::string s(n, '\0');
  f.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<size_t>(f.gcount()));
  return s;
}

TEST(BadInput, MissingKernel) {
  auto r = run_wisp({"--kernel", "/nonexistent/vmlinux"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("/nonexistent/vmlinux"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << describe(r);
}

TEST(BadInput, NotAKernel) {
  auto path = temp_file("not-a-kernel", std::string(8192, 'z'));
  auto r = run_wisp({"--kernel", path});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("not a kernel image"), std::string::npos) << describe(r);
}

TEST(BadInput, TruncatedVmlinux) {
  auto path = temp_file("truncated-vmlinux", head_of(guest_file("vmlinux"), 100));
  auto r = run_wisp({"--kernel", path});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("ELF kernel"), std::string::npos) << describe(r);
}

TEST(BadInput, TruncatedBzImage) {
  auto path = temp_file("truncated-bzimage", head_of(guest_file("bzImage"), 0x400));
  auto r = run_wisp({"--kernel", path});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("bzImage"), std::string::npos) << describe(r);
}

TEST(BadInput, MissingInitrd) {
  auto r = run_wisp({"--initrd", "/nonexistent/initrd.img"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("initrd /nonexistent/initrd.img"), std::string::npos) << describe(r);
}

TEST(BadInput, MemoryTooSmallForKernelAndInitrd) {
  auto big = temp_file("big-initrd", std::string(24 << 20, 'i'));
  auto r = run_wisp({"--mem", "32", "--initrd", big});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("memory too small"), std::string::npos) << describe(r);
}

TEST(BadInput, TooManyVcpus) {
  auto r = run_wisp({"--vcpus", "5000"});
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("--vcpus 5000"), std::string::npos) << describe(r);
}

TEST(BadInput, UsageErrors) {
  EXPECT_EQ(run_wisp({"--vcpus", "0"}).exit_code, 2);
  EXPECT_EQ(run_wisp({"--mem", "lots"}).exit_code, 2);
  EXPECT_EQ(run_wisp({"--bogus"}).exit_code, 2);
  auto h = run_wisp({"--help"});
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.out.find("--vcpus N"), std::string::npos);
}

TEST(BadInput, NoKvmDevice) {
  auto r = run_wisp({}, 30, {}, {"WISP_DEV_KVM=/nonexistent/kvm"});
  EXPECT_EQ(r.exit_code, 4) << describe(r);
  EXPECT_NE(r.err.find("/nonexistent/kvm does not exist"), std::string::npos) << describe(r);
}

TEST(BadInput, KvmPvmIsRefusedWithAnExplanation) {
  std::string sys = ::testing::TempDir() + "/fake-sys-module";
  mkdir(sys.c_str(), 0755);
  mkdir((sys + "/kvm_pvm").c_str(), 0755);
  auto r = run_wisp({}, 30, {}, {"WISP_DEV_KVM=/dev/null", "WISP_SYSFS_MODULE_DIR=" + sys});
  EXPECT_EQ(r.exit_code, 4) << describe(r);
  EXPECT_NE(r.err.find("kvm_pvm"), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace wisp::testing
