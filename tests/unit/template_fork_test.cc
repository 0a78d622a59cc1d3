// Sandbox.snapshot's store side (manager/template_fork.h) without a VM: a ControlServer over a
// fake VMM that writes a real diff snapshot into the files it is handed, recording where it
// was "restored from" as a VMM does. Checks the new generation's layout (the diff, hard links
// of the parent's layers under the names the diffs record), template.info's parent, a fork of
// a fork (three layers), that removing the parent leaves the fork whole, and the refusals.
#include "manager/template_fork.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "manager/agent_vm.h"
#include "manager/snapshot_ops.h"
#include "snapshot/snapshot_dir.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/scoped_env.h"
#include "tests/unit/snapshot_test_state.h"
#include "vmm/control/control_server.h"
#include "vmm/event/event_loop.h"

namespace wisp::manager {
namespace {

namespace fs = std::filesystem;
using snapshot::Bytes;
using snapshot::kPageSize;
using testutil::expect_error;
using testutil::ScopedEnv;

// A machine without drives (sealing would identify them on this host).
snapshot::SnapshotState machine_state(const std::string& id) {
  snapshot::SnapshotState s = snapshot::testing::sample_state();
  s.machine.virtio.erase(s.machine.virtio.begin());
  s.id = id;
  return s;
}

std::vector<snapshot::RegionContents> contents_for(const snapshot::SnapshotState& s,
                                                   std::vector<Bytes>* keep) {
  std::vector<snapshot::RegionContents> out;
  for (const auto& r : s.memory) {
    keep->push_back(snapshot::testing::pattern(r.size, static_cast<uint8_t>(r.file_offset)));
    out.push_back({r, keep->back()});
  }
  return out;
}

// The VMM of a clone restored from `restored_dir` (snapshot id `restored_id`): a diff over it.
class FakeVmm final : public control::Service {
 public:
  std::string restored_dir, restored_id;
  int snapshots = 0;
  void pause(bool) override {}
  void resume() override {}
  control::MemoryStats stats() override { return {}; }
  control::SnapshotReport snapshot(const control::SnapshotRequest& r) override {
    ++snapshots;
    if (!r.diff) throw Error("fake VMM: expected a diff");
    snapshot::SnapshotState s = machine_state("f0rk" + std::to_string(snapshots));
    s.diff.parent_dir = restored_dir;
    s.diff.parent_id = restored_id;
    s.diff.pages.assign((snapshot::memory_file_size(s.memory) / kPageSize + 7) / 8, 0);
    s.diff.pages[0] = 0x5;  // pages 0 and 2 written since the restore
    std::vector<Bytes> keep;
    snapshot::write_snapshot_files({r.state_fd, r.memory_fd, r.dir}, s, contents_for(s, &keep));
    control::SnapshotReport out;
    out.id = s.id;
    out.diff = true;
    out.total_ms = 2.5;
    out.memory_file_bytes = 4096;
    out.memory_disk_bytes = 8192;
    return out;
  }
};

class TemplateForkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("wisp-fork-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    socket_ = (root_ / "control.sock").string();
    server_ = std::make_unique<ControlServer>(socket_, loop_, vmm_, ::getuid());
    server_->start();
    loop_thread_ = std::thread([this] { loop_.run(); });
  }
  void TearDown() override {
    server_.reset();
    loop_.stop();
    loop_thread_.join();
    fs::remove_all(root_);
  }

  // A template with a full snapshot, as template create makes one.
  void make_base(const std::string& name) {
    TemplateStaging staging(name);
    snapshot::SnapshotState s = machine_state("ba5e");
    std::vector<Bytes> keep;
    snapshot::write_snapshot_dir(staging.snapshot_dir(), s, contents_for(s, &keep));
    TemplateInfo t;
    t.name = name;
    t.mode = "worker";
    t.argv = {"python3", "worker.py"};
    t.mem_mib = 1;
    t.vcpus = 2;
    staging.commit(t);
  }
  // A clone of `name` forked into `fork`, as serve does: the VMM restored from its generation.
  TemplateInfo fork(const std::string& name, const std::string& fork) {
    OpenTemplate parent = open_template(name);
    vmm_.restored_dir = canonical_path(parent.snapshot_dir);
    vmm_.restored_id = snapshot::verify_snapshot(parent.snapshot_dir).id;
    return fork_template(parent, socket_, fork);
  }
  static nlink_t links(const fs::path& p) {
    struct stat st;
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_nlink;
  }
  size_t layers(const std::string& dir) {
    size_t n = 0;
    verify_snapshot_chain(dir, [&](const SnapshotLayer&) { ++n; });
    return n;
  }

  fs::path root_;
  std::string socket_;
  EventLoop loop_;
  FakeVmm vmm_;
  std::unique_ptr<ControlServer> server_;
  std::thread loop_thread_;
};

TEST_F(TemplateForkTest, AForkIsADiffBesideHardLinksOfItsParent) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  make_base("base");
  TemplateInfo f = fork("base", "fork1");
  EXPECT_EQ(f.name, "fork1");
  EXPECT_EQ(f.parent, "base");
  EXPECT_EQ(f.argv, (std::vector<std::string>{"python3", "worker.py"}));  // the parent's handler
  EXPECT_EQ(f.mode, "worker");
  EXPECT_EQ(f.vcpus, 2u);
  EXPECT_DOUBLE_EQ(f.snapshot_ms, 2.5);
  EXPECT_EQ(f.memory_disk_bytes, 8192u);

  OpenTemplate t = open_template("fork1");
  EXPECT_EQ(t.info.parent, "base");  // template.info keeps it
  const fs::path gen = t.dir;
  EXPECT_EQ(snapshot::verify_snapshot(t.snapshot_dir).parent_dir, "parent-ba5e");
  EXPECT_TRUE(fs::is_directory(gen / "parent-ba5e"));
  for (const char* f : {"state", "memory"}) {
    EXPECT_EQ(links(gen / "parent-ba5e" / f), 2u) << f;  // the parent's own files, linked
    EXPECT_TRUE(fs::equivalent(gen / "parent-ba5e" / f,
                               fs::path(open_template("base").dir) / "snapshot" / f));
  }
  EXPECT_EQ(layers(t.snapshot_dir), 2u);

  // Removing the parent takes its names, not the fork's files.
  t = OpenTemplate{};
  remove_template("base");
  EXPECT_EQ(template_names(), std::vector<std::string>{"fork1"});
  EXPECT_EQ(links(gen / "parent-ba5e/memory"), 1u);
  EXPECT_EQ(layers(open_template("fork1").snapshot_dir), 2u);
  EXPECT_EQ(snapshot_memory_digest(open_template("fork1").snapshot_dir) != 0, true);
}

TEST_F(TemplateForkTest, AForkOfAForkHasThreeLayers) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  make_base("base");
  fork("base", "fork1");
  TemplateInfo f2 = fork("fork1", "fork2");
  EXPECT_EQ(f2.parent, "fork1");
  OpenTemplate t = open_template("fork2");
  const fs::path gen = t.dir;
  EXPECT_EQ(snapshot::verify_snapshot(t.snapshot_dir).parent_dir, "parent-f0rk1");
  EXPECT_EQ(snapshot::verify_snapshot((gen / "parent-f0rk1").string()).parent_dir, "parent-ba5e");
  EXPECT_TRUE(fs::is_directory(gen / "parent-ba5e"));
  EXPECT_EQ(layers(t.snapshot_dir), 3u);
  remove_template("base");
  remove_template("fork1");
  EXPECT_EQ(layers(open_template("fork2").snapshot_dir), 3u);
}

TEST_F(TemplateForkTest, RefusesABadOrTakenNameBeforeTheVmIsTouched) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  make_base("base");
  make_base("taken");
  expect_error([&] { fork("base", "../x"); }, {"template name"});
  expect_error([&] { fork("base", ".hidden"); }, {"template name"});
  expect_error([&] { fork("base", "taken"); }, {"template taken already exists"});
  EXPECT_EQ(vmm_.snapshots, 0);
  EXPECT_EQ(template_names(), (std::vector<std::string>{"base", "taken"}));
}

TEST_F(TemplateForkTest, AFailedSnapshotLeavesNothing) {
  ScopedEnv env("WISP_HOME", root_.c_str());
  make_base("base");
  OpenTemplate parent = open_template("base");
  EXPECT_THROW(fork_template(parent, (root_ / "no-such.sock").string(), "f"), VmFailed);
  // A VMM restored from somewhere else: its diff's parent is another snapshot.
  vmm_.restored_dir = canonical_path(parent.snapshot_dir);
  vmm_.restored_id = "0ther";
  expect_error([&] { fork_template(parent, socket_, "f"); }, {"is another snapshot"});
  EXPECT_EQ(template_names(), std::vector<std::string>{"base"});
  EXPECT_EQ(links(fs::path(parent.snapshot_dir) / "memory"), 1u);  // the links went too
}

TEST(ForkParentDirName, IsAPlainNameFromTheId) {
  EXPECT_EQ(fork_parent_dir_name("0123abcd"), "parent-0123abcd");
  expect_error([] { fork_parent_dir_name(""); }, {"snapshot id"});
  expect_error([] { fork_parent_dir_name("../x"); }, {"snapshot id \"../x\""});
  expect_error([] { fork_parent_dir_name(std::string(65, 'a')); }, {"snapshot id"});
}

}  // namespace
}  // namespace wisp::manager
