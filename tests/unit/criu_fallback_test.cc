// The host side of issue 17's CRIU fallback without a VM: what decides that a VM snapshot does
// not fit this host (manager/snapshot_fit.h, on real snapshot directories), the boot record a
// template keeps so its guest can be booted again (template.info's boot_* lines and
// manager/criu_boot.h's template_boot_spec), and `wisp template rebuild`'s refusals and its
// lock against a second rebuild (manager/template_rebuild.h).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "manager/criu_boot.h"
#include "manager/criu_image_store.h"
#include "manager/snapshot_fit.h"
#include "manager/template_rebuild.h"
#include "manager/template_store.h"
#include "snapshot/snapshot_dir.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/scoped_env.h"
#include "tests/unit/snapshot_test_state.h"

namespace wisp::manager {
namespace {

namespace fs = std::filesystem;
using testutil::expect_error;
using testutil::ScopedEnv;

class CriuFallbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("wisp-criu-fallback-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // A real snapshot directory (no drives: nothing to identify on this host).
  std::string write_snapshot() {
    snapshot::SnapshotState s = snapshot::testing::sample_state();
    s.machine.virtio.erase(s.machine.virtio.begin());
    std::vector<snapshot::Bytes> keep;
    std::vector<snapshot::RegionContents> regions;
    for (const auto& r : s.memory) {
      keep.push_back(snapshot::testing::pattern(r.size, 3));
      regions.push_back({r, keep.back()});
    }
    std::string dir = root_ / "snap";
    snapshot::write_snapshot_dir(dir, s, regions);
    return dir;
  }
  // Format major 1 in the state file's header, as an older wisp wrote it (the major is checked
  // before the checksum).
  static void make_state_older(const std::string& dir) {
    std::fstream f(dir + "/state", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f.put(1);
    f.put(0);
  }
  std::string touch(const std::string& name) {
    std::string p = root_ / name;
    std::ofstream(p) << "x";
    return p;
  }
  TemplateInfo worker_info() {
    TemplateInfo t;
    t.name = "w";
    t.mode = "worker";
    t.argv = {"python3", "/srv/w.py"};
    t.mem_mib = 512;
    t.vcpus = 1;
    t.boot_recorded = true;
    t.boot_kernel = touch("vmlinux");
    t.boot_rootfs = touch("rootfs.ext4");
    t.boot_cmdline = "wisp.x=1";
    t.drives = {t.boot_rootfs + ",ro", touch("data.img")};
    return t;
  }
  fs::path root_;
};

TEST_F(CriuFallbackTest, AnIntactSnapshotFits) {
  EXPECT_EQ(snapshot_unfit_reason(write_snapshot()), "");
}

TEST_F(CriuFallbackTest, AMissingMemoryFileDoesNotFit) {
  std::string dir = write_snapshot();
  fs::remove(dir + "/memory");
  std::string why = snapshot_unfit_reason(dir);
  EXPECT_NE(why.find(dir + "/memory: missing"), std::string::npos) << why;
}

TEST_F(CriuFallbackTest, AMemoryFileOfTheWrongSizeDoesNotFit) {
  std::string dir = write_snapshot();
  fs::resize_file(dir + "/memory", 4096);
  std::string why = snapshot_unfit_reason(dir);
  EXPECT_NE(why.find(dir + "/memory"), std::string::npos) << why;
}

TEST_F(CriuFallbackTest, AStateFileOfAnOlderFormatDoesNotFit) {
  std::string dir = write_snapshot();
  make_state_older(dir);
  std::string why = snapshot_unfit_reason(dir);
  EXPECT_NE(why.find(dir + "/state"), std::string::npos) << why;
  EXPECT_NE(why.find("older wisp"), std::string::npos) << why;
}

TEST_F(CriuFallbackTest, AMissingStateFileDoesNotFit) {
  std::string dir = write_snapshot();
  fs::remove(dir + "/state");
  EXPECT_NE(snapshot_unfit_reason(dir), "");
}

// The check made before a VMM is spawned sees what a stat and the state's header show, and
// leaves the rest to the VMM's restore (the full check above, after it failed).
TEST_F(CriuFallbackTest, ThePlainCheckSeesAMissingMemoryFileAndAnOlderFormat) {
  std::string dir = write_snapshot();
  EXPECT_EQ(snapshot_plainly_unfit_reason(dir), "");
  fs::resize_file(dir + "/memory", 4096);
  EXPECT_EQ(snapshot_plainly_unfit_reason(dir), "");  // its size needs the decoded state
  fs::remove(dir + "/memory");
  EXPECT_EQ(snapshot_plainly_unfit_reason(dir), dir + "/memory: missing");
  fs::create_directory(dir + "/memory");
  EXPECT_EQ(snapshot_plainly_unfit_reason(dir), dir + "/memory: not a regular file");

  fs::remove_all(dir);
  dir = write_snapshot();
  make_state_older(dir);
  std::string why = snapshot_plainly_unfit_reason(dir);
  EXPECT_NE(why.find(dir + "/state"), std::string::npos) << why;
  EXPECT_NE(why.find("older wisp"), std::string::npos) << why;
  fs::remove(dir + "/state");
  EXPECT_NE(snapshot_plainly_unfit_reason(dir).find(dir + "/state"), std::string::npos);
}

TEST_F(CriuFallbackTest, TheVmmsCpuRefusalIsRecognised) {
  EXPECT_TRUE(is_cpu_mismatch(
      "restore failed: wisp-vmm: /t/snapshot/state: snapshot is from another CPU: leaf 0x7"));
  EXPECT_FALSE(is_cpu_mismatch("restore failed: drive /x changed"));
}

TEST_F(CriuFallbackTest, TheBootRecordRoundTrips) {
  TemplateInfo t = worker_info();
  TemplateInfo back = decode_template_info(encode_template_info(t), "template.info");
  EXPECT_TRUE(back.boot_recorded);
  EXPECT_EQ(back.boot_kernel, t.boot_kernel);
  EXPECT_EQ(back.boot_initrd, "");
  EXPECT_EQ(back.boot_rootfs, t.boot_rootfs);
  EXPECT_EQ(back.boot_cmdline, "wisp.x=1");
  // A template from before the record has none.
  t.boot_recorded = false;
  EXPECT_FALSE(decode_template_info(encode_template_info(t), "f").boot_recorded);
  expect_error([] { parse_template_info("mode worker\narg x\nboot_rootfs rel.ext4\n", "f"); },
               {"f:3: boot_rootfs: expected an absolute path"});
}

TEST_F(CriuFallbackTest, TheBootSpecIsTheTemplatesMachine) {
  TemplateInfo t = worker_info();
  t.portable = true;
  t.net.own = true;
  t.net.allow = {"10.0.0.0/8"};
  VmSpec vm = template_boot_spec(t);
  EXPECT_EQ(vm.kernel, t.boot_kernel);
  EXPECT_EQ(vm.rootfs, t.boot_rootfs);
  EXPECT_EQ(vm.cmdline, "wisp.x=1");
  EXPECT_FALSE(vm.raw_cmdline);
  EXPECT_EQ(vm.mem_bytes, 512ull << 20);
  EXPECT_EQ(vm.vcpus, 1u);
  EXPECT_TRUE(vm.portable);                                     // what the CRIU image was dumped on
  EXPECT_EQ(vm.drives, std::vector<std::string>{t.drives[1]});  // the rootfs is not repeated
  EXPECT_TRUE(vm.network.own);
  EXPECT_EQ(vm.network.allow, t.net.allow);
}

TEST_F(CriuFallbackTest, TheBootSpecIsRefusedWithoutARecordOrAWorker) {
  TemplateInfo t = worker_info();
  t.boot_recorded = false;
  expect_error([&] { template_boot_spec(t); }, {"template w", "records no boot"});
  t = worker_info();
  t.mode = "exec";
  expect_error([&] { template_boot_spec(t); }, {"not a worker template"});
  t = worker_info();
  fs::remove(t.boot_rootfs);
  expect_error([&] { template_boot_spec(t); }, {t.boot_rootfs});
}

TEST_F(CriuFallbackTest, RebuildRefusesWhatItCannotRebuild) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  expect_error([] { rebuild_template("nope", {}, [](const std::string&) {}); },
               {"template nope: not found"});
  TemplateInfo t = worker_info();
  {
    TemplateStaging staging(t.name);
    fs::create_directories(staging.snapshot_dir());
    staging.commit(t);
  }
  expect_error([] { rebuild_template("w", {}, [](const std::string&) {}); },
               {"template w: no CRIU image"});
  TemplateInfo e = worker_info();
  e.name = "e";
  e.mode = "exec";
  {
    TemplateStaging staging(e.name);
    fs::create_directories(staging.snapshot_dir());
    staging.commit(e);
  }
  expect_error([] { rebuild_template("e", {}, [](const std::string&) {}); },
               {"template e: not a worker template"});
  // A generation other than the one asked for: nothing done.
  RebuildOptions other;
  other.only_generation = "/elsewhere";
  EXPECT_NE(rebuild_template("w", other, [](const std::string&) {}).skipped.find("replaced"),
            std::string::npos);
}

TEST_F(CriuFallbackTest, OneRebuildAtATime) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  TemplateInfo t = worker_info();
  {
    TemplateStaging staging(t.name);
    fs::create_directories(staging.snapshot_dir());
    staging.commit(t);
  }
  // Another rebuild holds the lock.
  std::string lock_path = rebuild_log_path("w");
  lock_path.replace(lock_path.size() - 4, 4, "-lock");
  UniqueFd held(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(held);
  ASSERT_EQ(flock(held.get(), LOCK_EX), 0);
  expect_error([] { rebuild_template("w", {}, [](const std::string&) {}); },
               {"template w: another rebuild of it is running"});
  RebuildOptions quiet;
  quiet.skip_if_busy = true;
  EXPECT_NE(rebuild_template("w", quiet, [](const std::string&) {}).skipped.find("running"),
            std::string::npos);
  held.reset();
  // Released: this one goes on (to the missing image).
  expect_error([] { rebuild_template("w", {}, [](const std::string&) {}); }, {"no CRIU image"});
}

}  // namespace
}  // namespace wisp::manager
