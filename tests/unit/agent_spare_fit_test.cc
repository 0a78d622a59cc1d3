#include <gtest/gtest.h>

#include <string>

#include "agent/container_root.h"
#include "agent/spare_fit.h"

namespace wisp::agent {
namespace {

SandboxSpec spec() {
  SandboxSpec s;
  s.argv = {"sh", "-c", "cat"};
  s.env = {"A=1"};
  s.cpu_time_ms = 0;
  s.open_files = 256;
  s.scratch_bytes = 256u << 20;
  return s;
}

constexpr CgroupLimits kLimits{256u << 20, 64};

std::string misfit(const SandboxSpec& call, const CgroupLimits& limits = kLimits) {
  const char* why = spare_misfit(spec(), call, limits);
  return why ? why : "";
}

TEST(SpareFit, TheSameSandboxFits) { EXPECT_EQ(misfit(spec()), ""); }

// The cgroup's pids.max is rewritten before the go: another value still fits.
TEST(SpareFit, AnotherPidsLimitFits) { EXPECT_EQ(misfit(spec(), {256u << 20, 8}), ""); }

// A fresh sandbox with pids.max 1 cannot fork its handler; a spare already did.
TEST(SpareFit, PidsOfOneNeverFits) { EXPECT_EQ(misfit(spec(), {256u << 20, 1}), "pids"); }

// Everything fixed when the sandbox is made must match, each named.
TEST(SpareFit, WhatIsFixedAtCreationMustMatch) {
  SandboxSpec s = spec();
  s.argv.back() = "cat -";
  EXPECT_EQ(misfit(s), "argv");
  s = spec();
  s.argv.push_back("x");
  EXPECT_EQ(misfit(s), "argv");
  s = spec();
  s.env = {"A=2"};
  EXPECT_EQ(misfit(s), "env");
  s = spec();
  s.env.clear();
  EXPECT_EQ(misfit(s), "env");
  s = spec();
  s.network = true;
  EXPECT_EQ(misfit(s), "network");
  s = spec();
  s.cpu_time_ms = 1000;
  EXPECT_EQ(misfit(s), "cpuTimeMs");
  s = spec();
  s.open_files = 255;
  EXPECT_EQ(misfit(s), "openFiles");
  s = spec();
  s.scratch_bytes = 128u << 20;
  EXPECT_EQ(misfit(s), "memoryBytes");
}

// A spare made in a container's root (the shim's templates) serves only calls for that root,
// user, groups and directory: a spare in another root would run the call in the wrong files.
TEST(SpareFit, TheContainerRootAndUserMustMatch) {
  SandboxSpec made = spec();
  made.root_device = "/dev/vda";
  made.cwd = "/srv";
  made.uid = 0;
  made.gid = 0;
  made.groups = {10};
  auto why = [&](const SandboxSpec& call) {
    const char* w = spare_misfit(made, call, kLimits);
    return std::string(w ? w : "");
  };
  EXPECT_EQ(why(made), "");
  SandboxSpec s = made;
  s.root_device = "";
  EXPECT_EQ(why(s), "rootDevice");
  s = made;
  s.root_device = "/dev/vdb";
  EXPECT_EQ(why(s), "rootDevice");
  s = made;
  s.cwd = "/";
  EXPECT_EQ(why(s), "cwd");
  s = made;
  s.uid = 65534;
  EXPECT_EQ(why(s), "uid/gid");
  s = made;
  s.gid = 1;
  EXPECT_EQ(why(s), "uid/gid");
  s = made;
  s.groups = {};
  EXPECT_EQ(why(s), "additionalGids");
  // A spare in the guest's own root does not serve a container call either.
  EXPECT_EQ(misfit(made), "rootDevice");
}

TEST(ContainerRoot, OnlyVirtioBlockDevicesAreRoots) {
  for (const char* ok : {"/dev/vda", "/dev/vdz", "/dev/vdab"})
    EXPECT_TRUE(is_root_device_name(ok)) << ok;
  for (const char* bad : {"", "/dev/vd", "/dev/sda", "/dev/vdA", "/dev/vda1", "/dev/vdabc",
                          "/dev/vd/", "dev/vda", "/dev/../dev/vda", "/dev/vda\n"}) {
    EXPECT_FALSE(is_root_device_name(bad)) << bad;
  }
}

}  // namespace
}  // namespace wisp::agent
