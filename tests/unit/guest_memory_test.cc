#include "vmm/memory/guest_memory.h"

#include <gtest/gtest.h>

#include "vmm/base/error.h"

namespace wisp {
namespace {

TEST(GuestMemoryLayout, SmallRamIsOneRegion) {
  auto r = GuestMemory::layout(128ull << 20);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].guest_base.value(), 0u);
  EXPECT_EQ(r[0].size, 128ull << 20);
}

TEST(GuestMemoryLayout, LargeRamSkipsTheMmioHole) {
  auto r = GuestMemory::layout(4ull << 30);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].size, GuestMemory::kMmioHoleStart);
  EXPECT_EQ(r[1].guest_base.value(), GuestMemory::kMmioHoleEnd);
  EXPECT_EQ(r[1].size, (4ull << 30) - GuestMemory::kMmioHoleStart);
  EXPECT_EQ(r[1].file_offset, GuestMemory::kMmioHoleStart);
}

TEST(GuestMemory, CheckedReadWrite) {
  auto mem = GuestMemory::create(1 << 20);
  uint32_t v = 0xdeadbeef, out = 0;
  EXPECT_TRUE(mem.write_obj(GuestAddress(0x1000), v));
  EXPECT_TRUE(mem.read_obj(GuestAddress(0x1000), &out));
  EXPECT_EQ(out, v);
  // Straddling the end, past the end, and wrapping all fail without touching anything.
  EXPECT_FALSE(mem.write_obj(GuestAddress((1 << 20) - 2), v));
  EXPECT_FALSE(mem.read_obj(GuestAddress(1 << 20), &out));
  EXPECT_FALSE(mem.read_obj(GuestAddress(~0ull - 1), &out));
  EXPECT_TRUE(mem.slice(GuestAddress(0), (1 << 20) + 1).empty());
  EXPECT_EQ(mem.slice(GuestAddress(0), 1 << 20).size(), 1u << 20);
}

TEST(GuestMemory, AddressesInTheHoleAreNotRam) {
  auto mem = GuestMemory::create(1 << 20);
  uint8_t b;
  EXPECT_FALSE(mem.read_obj(GuestAddress(GuestMemory::kMmioHoleStart), &b));
}

TEST(GuestMemory, SliceOrThrowNamesWhat) {
  auto mem = GuestMemory::create(1 << 20);
  try {
    mem.slice_or_throw(GuestAddress(0xff000), 0x2000, "initrd");
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("initrd"), std::string::npos);
  }
}

TEST(GuestMemory, RejectsBadSizes) {
  EXPECT_THROW(GuestMemory::create(0), Error);
  EXPECT_THROW(GuestMemory::create(4095), Error);
}

TEST(GuestAddress, CheckedAddDetectsWrap) {
  EXPECT_FALSE(GuestAddress(~0ull).checked_add(1).has_value());
  EXPECT_EQ(GuestAddress(1).checked_add(2)->value(), 3u);
}

}  // namespace
}  // namespace wisp
