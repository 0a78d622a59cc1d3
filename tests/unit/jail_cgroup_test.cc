#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "base/error.h"
#include "base/file_io.h"
#include "manager/runtime_dir.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/scoped_env.h"
#include "vmm/jail/cgroup.h"

namespace wisp::jail {
namespace {

using testutil::expect_error;
using testutil::ScopedEnv;

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

TEST(JailCgroupEvents, ParsesTheCounters) {
  MemoryEvents ev =
      parse_memory_events("low 0\nhigh 7\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n");
  EXPECT_EQ(ev.max, 3u);
  EXPECT_EQ(ev.oom, 2u);
  EXPECT_EQ(ev.oom_kill, 1u);
  ev = parse_memory_events("");
  EXPECT_EQ(ev.max + ev.oom + ev.oom_kill, 0u);
  ev = parse_memory_events("oom_kill 18446744073709551615");  // no final newline
  EXPECT_EQ(ev.oom_kill, 18446744073709551615u);
}

TEST(JailCgroupEvents, RejectsMalformedLines) {
  for (const char* bad :
       {"oom", "oom ", "oom x", "oom -1", "oom 1 2", "oom 18446744073709551616"}) {
    expect_error([&] { parse_memory_events(std::string("max 0\n") + bad + "\n"); },
                 {"memory.events", bad});
  }
}

TEST(JailCgroup, RootComesFromTheEnvironment) {
  {
    ScopedEnv env("WISP_CGROUP_ROOT", nullptr);
    EXPECT_EQ(cgroup2_root(), "/sys/fs/cgroup");
  }
  ScopedEnv env("WISP_CGROUP_ROOT", "/tmp/cg");
  EXPECT_EQ(cgroup2_root(), "/tmp/cg");
}

TEST(JailCgroup, NameIsOnePathComponent) {
  for (const char* bad : {"", ".", "..", "a/b", "../x"}) {
    expect_error([&] { VmCgroup::create(bad, {}); }, {"cgroup name"});
  }
}

TEST(JailCgroup, RefusesARootThatIsNotCgroup2) {
  manager::RuntimeDir tmp("wisp-cgroup-test");
  ScopedEnv env("WISP_CGROUP_ROOT", tmp.path().c_str());
  expect_error([] { VmCgroup::create("vm-1", {}); },
               {"cgroup v2 is not mounted at " + tmp.path(), "found a filesystem of type 0x",
                "--no-cgroup"});
  EXPECT_FALSE(exists(tmp.file("wisp")));  // nothing created on a host that lacks cgroup v2
}

TEST(JailCgroup, RefusesAMissingRoot) {
  ScopedEnv env("WISP_CGROUP_ROOT", "/nonexistent/cgroup");
  expect_error([] { VmCgroup::create("vm-1", {}); },
               {"cgroup v2 is not mounted at /nonexistent/cgroup", "No such file", "--no-cgroup"});
}

TEST(JailCgroup, NamesAHybridHost) {
  ScopedEnv env("WISP_CGROUP_ROOT", nullptr);
  struct statfs st;
  if (::statfs("/sys/fs/cgroup", &st) != 0 || st.f_type != TMPFS_MAGIC ||
      !exists("/sys/fs/cgroup/systemd")) {
    GTEST_SKIP() << "/sys/fs/cgroup is not a cgroup v1/hybrid tmpfs on this host";
  }
  expect_error([] { VmCgroup::create("vm-1", {}); },
               {"cgroup v2 is not mounted at /sys/fs/cgroup (found cgroup v1/hybrid)",
                "systemd.unified_cgroup_hierarchy=1", "--no-cgroup (debugging only)"});
}

// A hybrid host's cgroup2 mount has no controllers: they are all bound to v1 hierarchies.
TEST(JailCgroup, NamesAMissingController) {
  const std::string unified = "/sys/fs/cgroup/unified";
  struct statfs st {};
  std::string controllers;
  if (::statfs(unified.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC) {
    controllers = read_file(unified + "/cgroup.controllers");
  }
  if (st.f_type != CGROUP2_SUPER_MAGIC || controllers.find("memory") != std::string::npos) {
    GTEST_SKIP() << "no cgroup2 without the memory controller at " << unified;
  }
  ScopedEnv env("WISP_CGROUP_ROOT", unified.c_str());
  expect_error([] { VmCgroup::create("vm-1", {}); },
               {"the memory controller is not available in " + unified + "/cgroup.controllers",
                "--no-cgroup"});
  EXPECT_FALSE(exists(unified + "/wisp"));
}

// remove_stale_cgroups only lists directories and rmdirs them, so a plain directory stands in
// for ROOT (a real cgroup's interface files would not keep rmdir from succeeding).
TEST(JailCgroup, RemovesOnlyStaleCgroups) {
  manager::RuntimeDir tmp("wisp-cgroup-test");
  ScopedEnv env("WISP_CGROUP_ROOT", tmp.path().c_str());
  EXPECT_EQ(remove_stale_cgroups([](const std::string&) { return true; }), 0u);  // no ROOT/wisp
  ASSERT_EQ(::mkdir(tmp.file("wisp").c_str(), 0755), 0);
  for (const char* n : {"vm-1", "vm-2", "vm-3", "vm-4"}) {
    ASSERT_EQ(::mkdir(tmp.file(std::string("wisp/") + n).c_str(), 0755), 0);
  }
  ::close(::creat(tmp.file("wisp/cgroup.procs").c_str(), 0644));  // a file: never asked
  std::vector<std::string> asked;
  size_t removed = remove_stale_cgroups([&](const std::string& name) {
    asked.push_back(name);
    if (name == "vm-4") throw Error("cannot judge");  // logged, kept
    return name != "vm-2";
  });
  EXPECT_EQ(removed, 2u);
  EXPECT_EQ(asked.size(), 4u);
  EXPECT_FALSE(exists(tmp.file("wisp/vm-1")));
  EXPECT_TRUE(exists(tmp.file("wisp/vm-2")));
  EXPECT_FALSE(exists(tmp.file("wisp/vm-3")));
  EXPECT_TRUE(exists(tmp.file("wisp/vm-4")));
}

// The rest needs a real cgroup v2 with the memory controller, and root. This host may well
// lack it (a cgroup v1/hybrid host has cgroup2 without controllers at /sys/fs/cgroup/unified);
// the testbed has it: tests/integration/in-kvm build/dev/tests/wisp_unit_tests
// --gtest_filter='JailCgroup*'.
class JailCgroupReal : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string controllers;
    try {
      controllers = read_file(cgroup2_root() + "/cgroup.controllers");
    } catch (const Error&) {
    }
    if (controllers.find("memory") == std::string::npos || ::geteuid() != 0) {
      GTEST_SKIP() << "needs root and cgroup v2 with the memory controller at " << cgroup2_root();
    }
  }
  std::string name_ = "unit-test-" + std::to_string(::getpid());
};

std::string read_value(const std::string& path) {
  std::string v = read_file(path);
  if (!v.empty() && v.back() == '\n') v.pop_back();
  return v;
}

TEST_F(JailCgroupReal, CreatesWithLimitsAndRemoves) {
  CgroupLimits limits{.memory_max = 64 << 20, .pids_max = 32, .cpu_quota_us = 50000};
  VmCgroup cg = VmCgroup::create(name_, limits);
  EXPECT_EQ(cg.path(), cgroup2_root() + "/wisp/" + name_);
  EXPECT_EQ(read_value(cg.path() + "/memory.max"), "67108864");
  EXPECT_EQ(read_value(cg.path() + "/pids.max"), "32");
  EXPECT_EQ(read_value(cg.path() + "/cpu.max"), "50000 100000");
  if (exists(cg.path() + "/memory.swap.max")) {
    EXPECT_EQ(read_value(cg.path() + "/memory.swap.max"), "0");
  }
  for (const char* c : {"memory", "pids", "cpu"}) {
    EXPECT_NE(read_file(cgroup2_root() + "/wisp/cgroup.subtree_control").find(c), std::string::npos)
        << c;
  }
  EXPECT_GE(cg.procs_fd(), 0);
  MemoryEvents ev = cg.memory_events();
  EXPECT_EQ(ev.oom_kill, 0u);
  std::string path = cg.path();
  cg.remove();
  EXPECT_FALSE(exists(path));
  cg.remove();  // idempotent
}

TEST_F(JailCgroupReal, ZeroMeansNoLimit) {
  VmCgroup cg = VmCgroup::create(name_, {});
  EXPECT_EQ(read_value(cg.path() + "/memory.max"), "max");
  EXPECT_EQ(read_value(cg.path() + "/pids.max"), "max");
  EXPECT_EQ(read_value(cg.path() + "/cpu.max"), "max 100000");
}

TEST_F(JailCgroupReal, ALeftoverIsReplaced) {
  std::string path;
  {
    VmCgroup first = VmCgroup::create(name_, {});
    path = first.path();
  }
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);  // as a crashed VMM leaves it
  VmCgroup cg = VmCgroup::create(name_, {.pids_max = 7});
  EXPECT_EQ(read_value(path + "/pids.max"), "7");
}

// Forks a child that joins `cg` through procs_fd() and then runs `then`; returns its pid once
// it has joined.
template <typename Fn>
pid_t fork_into(const VmCgroup& cg, Fn then) {
  int ready[2];
  EXPECT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    if (::write(cg.procs_fd(), "0", 1) != 1) ::_exit(100);
    if (::write(ready[1], "j", 1) != 1) ::_exit(101);
    then();
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  EXPECT_EQ(::read(ready[0], &c, 1), 1) << "the child did not join";
  ::close(ready[0]);
  return pid;
}

TEST_F(JailCgroupReal, AChildJoinsAndRemoveKillsIt) {
  VmCgroup cg = VmCgroup::create(name_, {.memory_max = 64 << 20, .pids_max = 8});
  pid_t pid = fork_into(cg, [] {
    for (;;) ::pause();
  });
  ASSERT_GT(pid, 0);
  EXPECT_EQ(read_value(cg.path() + "/cgroup.procs"), std::to_string(pid));
  std::string path = cg.path();
  cg.remove();  // cgroup.kill, then rmdir once the child is gone
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_FALSE(exists(path));
}

TEST_F(JailCgroupReal, MemoryEventsTellAnOomKill) {
  VmCgroup cg = VmCgroup::create(name_, {.memory_max = 16 << 20, .pids_max = 8});
  pid_t pid = fork_into(cg, [] {
    size_t size = 128 << 20;  // eight times the limit
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) ::_exit(102);
    for (size_t i = 0; i < size; i += 4096) static_cast<volatile char*>(p)[i] = 1;
    ::_exit(103);  // not killed: the limit did not hold
  });
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  MemoryEvents ev = cg.memory_events();
  EXPECT_GE(ev.oom_kill, 1u);
  EXPECT_GE(ev.oom, 1u);
  EXPECT_GE(ev.max, 1u);
}

TEST_F(JailCgroupReal, StaleCgroupsAreRemoved) {
  { VmCgroup cg = VmCgroup::create(name_, {}); }  // ROOT/wisp exists from here on
  std::string stale = cgroup2_root() + "/wisp/" + name_ + "-stale";
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0);
  size_t removed =
      remove_stale_cgroups([&](const std::string& name) { return name == name_ + "-stale"; });
  EXPECT_EQ(removed, 1u);
  EXPECT_FALSE(exists(stale));
}

}  // namespace
}  // namespace wisp::jail
