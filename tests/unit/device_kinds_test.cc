// The table of virtio device kinds (vmm/virtio/device_kinds.h): names, building a device from
// its spec, a drive's identity across a snapshot, and each kind's Spec and State validate().
#include "vmm/virtio/device_kinds.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/unit/expect_error.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/virtio_spec.h"

namespace wisp {
namespace {

using testutil::expect_error;
namespace fs = std::filesystem;

TEST(DeviceKinds, NamesComeFromTheTable) {
  EXPECT_STREQ(kind_name(DeviceSpec{BlockSpec{}}), "virtio-blk");
  EXPECT_STREQ(kind_name(DeviceSpec{RngSpec{}}), "virtio-rng");
  EXPECT_STREQ(kind_name(DeviceSpec{VsockSpec{}}), "virtio-vsock");
  EXPECT_STREQ(kind_name(VirtioDeviceState{BlockState{}}), "virtio-blk");
  EXPECT_STREQ(kind_name(VirtioDeviceState{RngState{}}), "virtio-rng");
  EXPECT_STREQ(kind_name(VirtioDeviceState{VsockState{}}), "virtio-vsock");
  EXPECT_STREQ(kind_name(DeviceSpec{NetSpec{}}), "virtio-net");
  EXPECT_STREQ(kind_name(VirtioDeviceState{NetState{}}), "virtio-net");
  // Spec alternative i and State alternative i are one kind.
  static_assert(std::variant_size_v<DeviceSpec> == std::variant_size_v<VirtioDeviceState>);
  static_assert(std::is_same_v<VirtioKinds::KindOf<VsockSpec>, VirtioKinds::KindOf<VsockState>>);
}

class DeviceKindsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("wisp-kinds-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ / name; }

  fs::path dir_;
};

TEST_F(DeviceKindsTest, CreatesEachKindFromItsSpec) {
  std::ofstream(path("d.img")) << std::string(4096, 'x');
  EXPECT_EQ(create_virtio_device(BlockSpec{path("d.img"), true})->device_type(),
            virtio::kDeviceIdBlock);
  EXPECT_EQ(create_virtio_device(RngSpec{})->device_type(), virtio::kDeviceIdRng);
  EXPECT_EQ(create_virtio_device(VsockSpec{path("v.sock"), 5})->device_type(),
            virtio::kDeviceIdVsock);
  expect_error([&] { create_virtio_device(BlockSpec{path("missing.img")}); },
               {"drive " + path("missing.img")});
}

TEST_F(DeviceKindsTest, ADriveIsRecordedAndMustNotChange) {
  std::ofstream(path("d.img")) << std::string(8192, 'x');
  fs::create_directory(path("sub"));
  BlockSpec given{path("sub") + "/../d.img", true};
  auto recorded = std::get<BlockSpec>(record_identity(given));
  EXPECT_EQ(recorded.path, fs::canonical(path("d.img")).string());  // absolute, resolved
  EXPECT_TRUE(recorded.read_only);
  EXPECT_EQ(recorded.size_bytes, 8192u);
  EXPECT_NE(recorded.mtime_ns, 0);
  EXPECT_NO_THROW(check_identity(recorded));

  std::ofstream(path("d.img"), std::ios::app) << "more";
  expect_error([&] { check_identity(recorded); },
               {"drive " + recorded.path, "changed since the snapshot"});
  fs::remove(path("d.img"));
  expect_error([&] { check_identity(recorded); }, {"drive " + recorded.path, "No such file"});
  expect_error([&] { record_identity(given); }, {"drive " + given.path});
}

TEST(DeviceKinds, KindsWithoutAHostResourcePassThrough) {
  DeviceSpec rng = RngSpec{}, vsock = VsockSpec{"/run/v.sock", 9};
  EXPECT_EQ(record_identity(rng), rng);
  EXPECT_EQ(record_identity(vsock), vsock);
  EXPECT_NO_THROW(check_identity(rng));
  EXPECT_NO_THROW(check_identity(vsock));
}

TEST(DeviceKinds, BlockSpecValidateRefusesBadPaths) {
  EXPECT_NO_THROW(validate(DeviceSpec{BlockSpec{"/d.img"}}));
  expect_error([] { BlockSpec{}.validate(); }, {"virtio-blk spec: path is empty"});
  expect_error([] { BlockSpec{std::string("a\0b", 3)}.validate(); }, {"NUL"});
  expect_error([] { BlockSpec{std::string(BlockSpec::kMaxPathBytes + 1, 'a')}.validate(); },
               {"4097 bytes (limit 4096)"});
}

TEST(DeviceKinds, BlockStateValidateRefusesImpossibleDisks) {
  EXPECT_NO_THROW((BlockState{1 << 20, true, 128}.validate()));
  EXPECT_NO_THROW((BlockState{UINT64_MAX / 512, false, 32768}.validate()));
  expect_error(
      [] {
        BlockState{UINT64_MAX / 512 + 1, false, 128}.validate();
      },
      {"virtio-blk state: capacity_sectors"});
  expect_error([] { BlockState{8, false, 0}.validate(); }, {"seg_max 0"});
  expect_error([] { BlockState{8, false, 32769}.validate(); }, {"seg_max 32769"});
  expect_error([] { validate(VirtioDeviceState{BlockState{}}); }, {"seg_max 0"});
}

TEST(DeviceKinds, VsockValidateRefusesReservedCidsAndLongPaths) {
  for (uint64_t cid : {0ull, 1ull, 2ull, 0xffffffffull, 1ull << 32}) {
    expect_error([&] { VsockSpec{"", cid}.validate(); }, {"guest CID " + std::to_string(cid)});
    expect_error([&] { VsockState{cid}.validate(); }, {"guest CID " + std::to_string(cid)});
  }
  EXPECT_NO_THROW((VsockSpec{"", 3}.validate()));  // a snapshot's: the path comes at restore
  EXPECT_NO_THROW((VsockState{0xfffffffe}.validate()));
  expect_error(
      [] {
        VsockSpec{"/tmp/" + std::string(100, 'a'), 3}.validate();
      },
      {"too long for a Unix socket"});
}

TEST(DeviceKinds, RngHasNothingToRefuse) {
  EXPECT_NO_THROW(validate(DeviceSpec{RngSpec{}}));
  EXPECT_NO_THROW(validate(VirtioDeviceState{RngState{}}));
}

}  // namespace
}  // namespace wisp
