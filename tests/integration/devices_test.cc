// virtio devices in a real guest: virtio-blk on a raw image (ext4 written and read back,
// read-only enforced) and virtio-rng.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/integration/wisp_runner.h"

namespace wisp::testing {
namespace {

// A fresh ext4 image made on the host with mkfs.ext4 (e2fsprogs).
std::string make_ext4(const std::string& name, int mib) {
  std::string path = ::testing::TempDir() + "/" + name;
  unlink(path.c_str());
  std::string cmd = "truncate -s " + std::to_string(mib) + "M " + path +
                    " && mkfs.ext4 -q -F -E root_owner=0:0 " + path;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return path;
}

ProcessResult run_cmd(const std::vector<std::string>& drives, const std::string& cmd) {
  std::vector<std::string> args;
  for (const auto& d : drives) args.insert(args.end(), {"--drive", d});
  args.insert(args.end(), {"--cmdline", "quiet wisp_action=cmd wisp_cmd=\"" + cmd + "\""});
  return run_wisp(args, 180);
}

TEST(VirtioBlk, Ext4WrittenInTheGuestReadsBackAfterReboot) {
  std::string img = make_ext4("blk-rw.img", 64);
  auto w = run_cmd({img},
                   "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && "
                   "seq 1 20000 > /mnt/numbers && sync && md5sum /mnt/numbers && umount /mnt");
  ASSERT_EQ(w.exit_code, 0) << describe(w);
  ASSERT_NE(w.out.find("cmd exit=0"), std::string::npos) << describe(w);
  auto sum_at = w.out.find("  /mnt/numbers");
  ASSERT_NE(sum_at, std::string::npos) << describe(w);
  std::string sum = w.out.substr(sum_at - 32, 32);

  // Second boot, read-only: the data is there and identical.
  auto r = run_cmd({img + ",ro"},
                   "mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt && "
                   "md5sum /mnt/numbers && umount /mnt");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find(sum + "  /mnt/numbers"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("cmd exit=0"), std::string::npos) << describe(r);
}

TEST(VirtioBlk, ReadOnlyDriveRefusesWrites) {
  std::string img = make_ext4("blk-ro.img", 16);
  std::string before = "md5sum < " + img + " > " + img + ".md5";
  ASSERT_EQ(std::system(before.c_str()), 0);
  // The guest kernel honours VIRTIO_BLK_F_RO; `blockdev --setrw` overrides that in the guest,
  // so the write reaches the device, which must refuse it itself.
  auto r = run_cmd({img + ",ro"},
                   "cat /sys/block/vda/ro; blockdev --setrw /dev/vda; "
                   "dd if=/dev/zero of=/dev/vda bs=4096 count=1 oflag=direct "
                   "&& echo WRITE-OK || echo WRITE-REFUSED");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("\n1\r\n"), std::string::npos) << "guest sees a read-only disk\n"
                                                      << describe(r);
  EXPECT_NE(r.out.find("WRITE-REFUSED"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("WRITE-OK"), std::string::npos) << describe(r);
  std::string after = "md5sum < " + img + " | cmp -s - " + img + ".md5";
  EXPECT_EQ(std::system(after.c_str()), 0) << "the read-only image changed";
}

TEST(VirtioBlk, TwoDrivesAppearAsVdaAndVdb) {
  std::string a = make_ext4("blk-a.img", 16), b = make_ext4("blk-b.img", 32);
  auto r = run_cmd({a, b + ",ro"}, "cat /sys/block/vda/size /sys/block/vdb/size");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("32768"), std::string::npos) << describe(r);  // 16 MiB in sectors
  EXPECT_NE(r.out.find("65536"), std::string::npos) << describe(r);
}

TEST(VirtioBlk, MissingImageIsABadInputError) {
  auto r = run_wisp({"--drive", "/nonexistent/disk.img"}, 30);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("/nonexistent/disk.img"), std::string::npos) << describe(r);
}

TEST(VirtioRng, HwrngYieldsBytes) {
  auto r = run_cmd({},
                   "cat /sys/class/misc/hw_random/rng_current; "
                   "head -c 4096 /dev/hwrng | wc -c; head -c 64 /dev/hwrng | od -An -tx1");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("virtio_rng"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("4096"), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace wisp::testing
