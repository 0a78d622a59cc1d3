#include "vmm/boot/boot_params.h"

#include <asm/bootparam.h>
#include <gtest/gtest.h>

#include <cstring>

#include "base/error.h"
#include "vmm/arch/layout.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {
namespace {

TEST(E820, SmallGuestHasLowRamReservedEbdaAndHighRam) {
  auto map = build_e820(128ull << 20);
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map[0].addr, 0u);
  EXPECT_EQ(map[0].size, layout::kEbdaStart);
  EXPECT_EQ(map[0].type, kE820Ram);
  EXPECT_EQ(map[1].type, kE820Reserved);
  EXPECT_EQ(map[1].addr + map[1].size, layout::kHighMemStart);
  EXPECT_EQ(map[2].addr, layout::kHighMemStart);
  EXPECT_EQ(map[2].addr + map[2].size, 128ull << 20);
}

TEST(E820, LargeGuestContinuesAbove4GiB) {
  auto map = build_e820(5ull << 30);
  ASSERT_EQ(map.size(), 4u);
  EXPECT_EQ(map[2].addr + map[2].size, GuestMemory::kMmioHoleStart);
  EXPECT_EQ(map[3].addr, GuestMemory::kMmioHoleEnd);
  EXPECT_EQ(map[3].size, (5ull << 30) - GuestMemory::kMmioHoleStart);
  // No entry may overlap another.
  for (size_t i = 1; i < map.size(); ++i) EXPECT_GE(map[i].addr, map[i - 1].addr + map[i - 1].size);
}

KernelImage elf_kernel() {
  KernelImage k;
  k.format = KernelImage::Format::kElf;
  k.entry = 0x1000000;
  k.kernel_end = 0x2000000;
  return k;
}

TEST(Initrd, PlacedHighPageAlignedAboveTheKernel) {
  auto k = elf_kernel();
  uint64_t addr = place_initrd(k, 128ull << 20, 0x12345);
  EXPECT_EQ(addr % 4096, 0u);
  EXPECT_GE(addr, k.kernel_end);
  EXPECT_LE(addr + 0x12345, 128ull << 20);
  EXPECT_GT(addr, 120ull << 20);
}

TEST(Initrd, RespectsInitrdAddrMax) {
  auto k = elf_kernel();
  k.initrd_addr_max = 0x3fffffff;
  uint64_t addr = place_initrd(k, 2ull << 30, 0x100000);
  EXPECT_LE(addr + 0x100000, 0x40000000u);
}

TEST(Initrd, TooBigSaysHowMuchMemoryIsNeeded) {
  auto k = elf_kernel();
  try {
    place_initrd(k, 64ull << 20, 40ull << 20);
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("memory too small"), std::string::npos);
    EXPECT_NE(m.find("72 MiB"), std::string::npos) << m;
  }
}

TEST(BootParams, FieldsForAnElfKernel) {
  auto k = elf_kernel();
  BootParamsInput in{&k, 256ull << 20, layout::kCmdlineAddr, 42, 0x7000000, 0x1234};
  auto bytes = build_boot_params(in);
  ASSERT_EQ(bytes.size(), 4096u);
  boot_params bp;
  std::memcpy(&bp, bytes.data(), sizeof(bp));
  EXPECT_EQ(bp.hdr.boot_flag, 0xAA55);
  EXPECT_EQ(bp.hdr.header, 0x53726448u);
  EXPECT_EQ(bp.hdr.type_of_loader, 0xff);
  EXPECT_EQ(bp.hdr.cmd_line_ptr, layout::kCmdlineAddr);
  EXPECT_EQ(bp.hdr.cmdline_size, 42u);
  EXPECT_EQ(bp.hdr.ramdisk_image, 0x7000000u);
  EXPECT_EQ(bp.hdr.ramdisk_size, 0x1234u);
  EXPECT_TRUE(bp.hdr.loadflags & LOADED_HIGH);
  ASSERT_EQ(bp.e820_entries, 3);
  EXPECT_EQ(bp.e820_table[2].addr + bp.e820_table[2].size, 256ull << 20);
}

TEST(BootParams, BzImageHeaderIsCopiedThenPatched) {
  KernelImage k = elf_kernel();
  k.format = KernelImage::Format::kBzImage;
  k.setup_header.assign(0x26c - 0x1f1, 0);
  k.setup_header[0x206 - 0x1f1] = 0x0f;  // version 2.15
  k.setup_header[0x207 - 0x1f1] = 0x02;
  k.setup_header[0x230 - 0x1f1 + 2] = 0x20;  // kernel_alignment 0x200000
  BootParamsInput in{&k, 128ull << 20, layout::kCmdlineAddr, 1, 0, 0};
  boot_params bp;
  auto bytes = build_boot_params(in);
  std::memcpy(&bp, bytes.data(), sizeof(bp));
  EXPECT_EQ(bp.hdr.version, 0x020f);
  EXPECT_EQ(bp.hdr.kernel_alignment, 0x200000u);
  EXPECT_EQ(bp.hdr.type_of_loader, 0xff);
  EXPECT_EQ(bp.hdr.ramdisk_image, 0u);
}

}  // namespace
}  // namespace wisp
