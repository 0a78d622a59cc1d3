// The shim's container roots (issue 16 item 2): containerd's rootfs mounts parsed into a source
// (shim/rootfs_mounts.h), its image's cache key (shim/rootfs_key.h: the overlay's lowerdir
// chain, or a directory's metadata), the image made once with mkfs.ext4 and then found in the
// cache (shim/rootfs_image.h), the OCI process's sandbox (shim/oci_sandbox.h) and the template
// name of an image + command (shim/snapshot_start.h).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "base/error.h"
#include "shim/oci_sandbox.h"
#include "shim/rootfs_image.h"
#include "shim/rootfs_key.h"
#include "shim/rootfs_mounts.h"
#include "shim/snapshot_start.h"

namespace wisp::shim {
namespace {

std::string error_of(const std::vector<RootfsMount>& mounts) {
  try {
    parse_rootfs_mounts(mounts);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RootfsMounts, NativeSnapshotterBindIsADirectory) {
  RootfsSource s =
      parse_rootfs_mounts({{"bind", "/var/lib/c/snapshots/7/fs", "", {"rbind", "rw"}}});
  EXPECT_EQ(s.kind, RootfsSource::Kind::kDirectory);
  EXPECT_EQ(s.directory, "/var/lib/c/snapshots/7/fs");
  s = parse_rootfs_mounts({{"none", "/snap/fs", "", {"rbind", "ro"}}});
  EXPECT_EQ(s.kind, RootfsSource::Kind::kDirectory);
}

TEST(RootfsMounts, OverlayGivesTheLowerdirChainTopmostFirst) {
  RootfsSource s = parse_rootfs_mounts({{"overlay",
                                         "overlay",
                                         "",
                                         {"index=off", "workdir=/s/9/work", "upperdir=/s/9/fs",
                                          "lowerdir=/s/3/fs:/s/2/fs:/s/1/fs"}}});
  EXPECT_EQ(s.kind, RootfsSource::Kind::kOverlay);
  EXPECT_EQ(s.lowerdirs, (std::vector<std::string>{"/s/3/fs", "/s/2/fs", "/s/1/fs"}));
  EXPECT_EQ(s.upperdir, "/s/9/fs");
}

TEST(RootfsMounts, BadBundlesAreNamed) {
  EXPECT_NE(error_of({}).find("rootfs: no mounts"), std::string::npos);
  EXPECT_NE(error_of({{"bind", "/a", "", {}}, {"bind", "/b", "", {}}}).find("2 mounts"),
            std::string::npos);
  EXPECT_NE(error_of({{"tmpfs", "tmpfs", "", {}}}).find("rootfs[0].type: 'tmpfs' is not supported"),
            std::string::npos);
  EXPECT_NE(error_of({{"bind", "relative/fs", "", {"rbind"}}}).find("rootfs[0].source"),
            std::string::npos);
  EXPECT_NE(error_of({{"bind", "/s/../etc", "", {"rbind"}}}).find("'..' component"),
            std::string::npos);
  EXPECT_NE(error_of({{"overlay", "overlay", "", {"upperdir=/u"}}}).find("without lowerdir"),
            std::string::npos);
  EXPECT_NE(error_of({{"overlay", "overlay", "", {"lowerdir=/a:b"}}}).find("lowerdir[1]"),
            std::string::npos);
  EXPECT_NE(error_of({{"overlay", "overlay", "", {"lowerdir=/a::/b"}}}).find("lowerdir[1]"),
            std::string::npos);
  // "none" without a bind option is no bind.
  EXPECT_NE(error_of({{"none", "/a", "", {"ro"}}}).find("'none' is not supported"),
            std::string::npos);
}

class RootfsTree : public ::testing::Test {
 protected:
  RootfsTree() {
    char tmpl[] = "/tmp/wisp-rootfs-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    tree_ = dir_ + "/tree";
    ::mkdir(tree_.c_str(), 0755);
    ::mkdir((tree_ + "/bin").c_str(), 0755);
    write("bin/tool", "#!/bin/sh\necho tool\n");
    write("only-in-image", "from the image\n");
    EXPECT_EQ(::symlink("tool", (tree_ + "/bin/sh").c_str()), 0);
  }
  ~RootfsTree() noexcept override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  void write(const std::string& rel, const std::string& data) {
    std::ofstream(tree_ + "/" + rel) << data;
    // A fixed mtime: digests differ only by what a test changes.
    timeval t[2] = {{1000000000, 0}, {1000000000, 0}};
    ::utimes((tree_ + "/" + rel).c_str(), t);
  }
  std::string digest() {
    TreeStats stats;
    return tree_metadata_digest(tree_, &stats);
  }

  std::string dir_, tree_;
};

TEST_F(RootfsTree, MetadataDigestFollowsPathsSizesModesMtimesAndLinks) {
  std::string base = digest();
  EXPECT_EQ(digest(), base);  // stable
  TreeStats stats;
  tree_metadata_digest(tree_, &stats);
  EXPECT_EQ(stats.entries, 5u);  // the root, bin, bin/tool, bin/sh, only-in-image
  EXPECT_EQ(stats.bytes, 20u + 15u + 4u);

  ::chmod((tree_ + "/bin/tool").c_str(), 0700);
  std::string mode = digest();
  EXPECT_NE(mode, base);
  write("bin/tool", "#!/bin/sh\necho tool\n");  // same size and mtime as before: mode differs
  EXPECT_EQ(digest(), mode);
  write("bin/tool", "#!/bin/sh\necho TOOL\n");  // same size, same fixed mtime: not seen
  EXPECT_EQ(digest(), mode);
  write("bin/tool", "#!/bin/sh\necho tool2\n");  // a size
  EXPECT_NE(digest(), mode);
  std::string sized = digest();
  timeval t[2] = {{1000000001, 0}, {1000000001, 0}};
  ::utimes((tree_ + "/only-in-image").c_str(), t);  // an mtime
  EXPECT_NE(digest(), sized);
  std::string timed = digest();
  ::unlink((tree_ + "/bin/sh").c_str());
  EXPECT_EQ(::symlink("other", (tree_ + "/bin/sh").c_str()), 0);  // a link target
  EXPECT_NE(digest(), timed);
  std::string linked = digest();
  ::rename((tree_ + "/only-in-image").c_str(), (tree_ + "/only-in-imagf").c_str());  // a path
  EXPECT_NE(digest(), linked);
}

TEST_F(RootfsTree, OverlayKeyIsTheLowerdirChainPlusANonEmptyUpper) {
  RootfsSource a;
  a.kind = RootfsSource::Kind::kOverlay;
  a.lowerdirs = {"/s/3/fs", "/s/2/fs"};
  TreeStats stats;
  std::string key = rootfs_key(a, &stats);
  EXPECT_EQ(rootfs_key(a, &stats), key);
  RootfsSource b = a;
  b.lowerdirs = {"/s/2/fs", "/s/3/fs"};  // the order is the image
  EXPECT_NE(rootfs_key(b, &stats), key);
  b = a;
  b.lowerdirs = {"/s/3/fs:/s/2", "fs"};  // no two chains hash alike
  EXPECT_NE(rootfs_key(b, &stats), key);
  // The container's own empty layer is no part of the image; one with files in it is.
  std::string empty = dir_ + "/upper";
  ::mkdir(empty.c_str(), 0755);
  b = a;
  b.upperdir = empty;
  EXPECT_EQ(rootfs_key(b, &stats), key);
  b.upperdir = tree_;
  EXPECT_NE(rootfs_key(b, &stats), key);
  // A directory's key is its metadata digest, never an overlay's.
  RootfsSource d;
  d.directory = tree_;
  EXPECT_EQ(rootfs_key(d, &stats), digest());
  EXPECT_NE(digest(), key);
}

TEST_F(RootfsTree, TheImageIsMadeOnceThenFoundInTheCache) {
  RootfsSource src;
  src.directory = tree_;
  RootfsCache cache{dir_ + "/cache", 1ull << 30};
  RootfsImage first = ensure_rootfs_image(src, cache);
  EXPECT_TRUE(first.built);
  EXPECT_EQ(first.path, cache.dir + "/" + first.key + ".ext4");
  struct stat st;
  ASSERT_EQ(::stat(first.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  // The image holds the tree: debugfs (e2fsprogs) reads a file back without mounting it.
  std::string out = dir_ + "/cat.out";
  std::string cmd =
      "debugfs -R 'cat /only-in-image' '" + first.path + "' > '" + out + "' 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "from the image");

  RootfsImage again = ensure_rootfs_image(src, cache);
  EXPECT_FALSE(again.built);
  EXPECT_EQ(again.path, first.path);
  // Nothing but the image is left in the cache (no temporary files, no mounts).
  std::string listing = dir_ + "/ls.out";
  std::system(("ls -A '" + cache.dir + "' | grep -v '\\.lock$' > '" + listing + "'").c_str());
  std::ifstream ls(listing);
  std::string only, extra;
  std::getline(ls, only);
  EXPECT_EQ(only, first.key + ".ext4");
  EXPECT_FALSE(std::getline(ls, extra)) << extra;

  // Another tree would take the cache over its cap: refused, saying so.
  write("more", std::string(4096, 'x'));
  RootfsCache small{cache.dir, static_cast<uint64_t>(st.st_size) + 1024};
  try {
    ensure_rootfs_image(src, small);
    ADD_FAILURE() << "over the cap";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("WISP_SHIM_ROOTFS_CACHE_MAX"), std::string::npos)
        << e.what();
  }
}

TEST(RootfsImageSize, RoomForTheTreeAndItsInodes) {
  EXPECT_EQ(rootfs_image_bytes({1, 0}), 17ull << 20);  // a block, 10%, 16 MiB: rounded up
  uint64_t big = rootfs_image_bytes({1000, 100ull << 20});
  EXPECT_GE(big, (100ull << 20) + 1000 * 4096);
  EXPECT_EQ(big % (1 << 20), 0u);
}

TEST(OciSandbox, UserCwdAndLimitsFromTheSpec) {
  OciSandbox s = parse_oci_sandbox(R"({
    "process": {"args": ["x"], "cwd": "/srv", "user": {"uid": 1000, "gid": 100,
      "additionalGids": [10, 20]},
      "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                  {"type": "RLIMIT_CPU", "hard": 5, "soft": 5}]},
    "linux": {"resources": {"memory": {"limit": 134217728}, "pids": {"limit": 32}}}})");
  EXPECT_EQ(s.cwd, "/srv");
  EXPECT_EQ(s.uid, 1000u);
  EXPECT_EQ(s.gid, 100u);
  EXPECT_EQ(s.additional_gids, (std::vector<uint32_t>{10, 20}));
  EXPECT_EQ(s.open_files, 1024u);
  EXPECT_EQ(s.cpu_time_ms, 5000u);
  EXPECT_EQ(s.memory_bytes, 134217728u);
  EXPECT_EQ(s.pids, 32u);
  // containerd's defaults: root, "/", no limits (0: the agent's).
  OciSandbox d = parse_oci_sandbox(R"({"process": {"args": ["x"], "user": {"uid": 0, "gid": 0}},
    "linux": {"resources": {"memory": {"limit": -1}}}})");
  EXPECT_EQ(d.cwd, "/");
  EXPECT_EQ(d.uid, 0u);
  EXPECT_EQ(d.memory_bytes, 0u);
  EXPECT_EQ(d.open_files, 0u);
}

TEST(OciSandbox, BadFieldsAreNamed) {
  auto error = [](const std::string& json) {
    try {
      parse_oci_sandbox(json);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error(R"({"process": {"cwd": "rel"}})").find("process.cwd"), std::string::npos);
  EXPECT_NE(error(R"({"process": {"user": {"uid": -1}}})").find("process.user.uid"),
            std::string::npos);
  EXPECT_NE(error(R"({"process": {"user": {"uid": 1.5}}})").find("process.user.uid"),
            std::string::npos);
  EXPECT_NE(error(R"({"process": {"user": {"gid": "0"}}})").find("process.user.gid"),
            std::string::npos);
  EXPECT_NE(error(R"({"process": {"rlimits": {}}})").find("process.rlimits"), std::string::npos);
  EXPECT_NE(error(R"({"linux": {"resources": {"pids": {"limit": "9"}}}})")
                .find("linux.resources.pids.limit"),
            std::string::npos);
  EXPECT_NE(error("[1]").find("expected an object"), std::string::npos);
}

TEST(SnapshotStart, TheTemplateNameIsTheImageAndCommand) {
  ContainerStart a{"/c/k.ext4", "key1", {"/bin/sh", "-c", "echo hi"}, {"PATH=/bin"}, {}};
  std::string name = template_name_for(a);
  EXPECT_EQ(name.rfind("ctr-", 0), 0u);
  EXPECT_EQ(name.size(), 44u);  // within serve's 64
  EXPECT_EQ(template_name_for(a), name);
  ContainerStart b = a;
  b.image_path = "/elsewhere/k.ext4";  // the cache's place is not the image
  EXPECT_EQ(template_name_for(b), name);
  for (int field = 0; field < 7; ++field) {
    b = a;
    switch (field) {
      case 0:
        b.image_key = "key2";
        break;
      case 1:
        b.args.back() = "echo ho";
        break;
      case 2:
        b.env.push_back("A=1");
        break;
      case 3:
        b.sandbox.cwd = "/srv";
        break;
      case 4:
        b.sandbox.uid = 1;
        break;
      case 5:
        b.sandbox.memory_bytes = 1 << 27;
        break;
      case 6:
        b.sandbox.additional_gids = {5};
        break;
    }
    EXPECT_NE(template_name_for(b), name) << field;
  }
}

}  // namespace
}  // namespace wisp::shim
