#include "vmm/memory/guest_memory.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "vmm/memory/page_prefetch.h"

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

// A snapshot-like memory file of `pages` pages with data only where `data` says (a page of
// `fill` bytes each), the rest a hole. Unlinked at once: the fd keeps it.
UniqueFd memory_file(uint64_t pages, const std::vector<uint64_t>& data, uint8_t fill) {
  std::string path = ::testing::TempDir() + "wisp-guestmem-XXXXXX";
  int fd = ::mkstemp(path.data());
  if (fd < 0) throw_errno("mkstemp " + path);
  ::unlink(path.c_str());
  UniqueFd out(fd);
  if (::ftruncate(fd, static_cast<off_t>(pages * 4096)) != 0) throw_errno("ftruncate");
  std::vector<uint8_t> page(4096, fill);
  for (uint64_t p : data) {
    if (::pwrite(fd, page.data(), page.size(), static_cast<off_t>(p * 4096)) != 4096)
      throw_errno("pwrite");
  }
  if (::fsync(fd) != 0) throw_errno("fsync");
  return out;
}

std::vector<uint64_t> set_pages(const std::vector<bool>& pages) {
  std::vector<uint64_t> out;
  for (size_t i = 0; i < pages.size(); ++i)
    if (pages[i]) out.push_back(i);
  return out;
}

TEST(GuestMemoryFilePrivate, TracksWrittenResidentAndDataPages) {
  auto mem = GuestMemory::map_file_private(memory_file(64, {3, 10}, 0xaa), 64 * 4096);
  EXPECT_TRUE(mem.is_file_private());
  EXPECT_EQ(mem.page_count(), 64u);
  EXPECT_GE(mem.memfd(), 0);
  EXPECT_EQ(set_pages(mem.written_pages()), std::vector<uint64_t>{});
  EXPECT_EQ(set_pages(mem.data_pages()), (std::vector<uint64_t>{3, 10}));

  // Reading maps file pages (resident) without making private copies.
  uint8_t b = 0;
  EXPECT_TRUE(mem.read_obj(GuestAddress(3 * 4096 + 5), &b));
  EXPECT_EQ(b, 0xaa);
  EXPECT_TRUE(mem.read_obj(GuestAddress(20 * 4096), &b));
  EXPECT_EQ(b, 0);
  std::vector<bool> resident = mem.resident_pages();
  EXPECT_TRUE(resident[3]);
  EXPECT_TRUE(resident[20]);
  EXPECT_FALSE(resident[40]);
  EXPECT_EQ(set_pages(mem.written_pages()), std::vector<uint64_t>{});

  // Writing a hole page and a data page makes private copies; the file keeps its bytes.
  EXPECT_TRUE(mem.write_obj(GuestAddress(30 * 4096 + 1), uint8_t{7}));
  EXPECT_TRUE(mem.write_obj(GuestAddress(10 * 4096), uint8_t{8}));
  EXPECT_EQ(set_pages(mem.written_pages()), (std::vector<uint64_t>{10, 30}));

  // populate_writable makes private copies without changing a byte (populateWritable).
  mem.populate_writable(3, 1);
  EXPECT_EQ(set_pages(mem.written_pages()), (std::vector<uint64_t>{3, 10, 30}));
  EXPECT_TRUE(mem.read_obj(GuestAddress(3 * 4096 + 5), &b));
  EXPECT_EQ(b, 0xaa);
  EXPECT_TRUE(mem.resident_pages()[30]);
  EXPECT_EQ(set_pages(mem.data_pages()), (std::vector<uint64_t>{3, 10, 30}));
  uint8_t in_file = 0;
  EXPECT_EQ(::pread(mem.memfd(), &in_file, 1, 10 * 4096), 1);
  EXPECT_EQ(in_file, 0xaa);
}

TEST(GuestMemoryFilePrivate, OverlaysAnotherFilesPages) {
  auto mem = GuestMemory::map_file_private(memory_file(64, {20, 21, 22}, 0x11), 64 * 4096);
  UniqueFd layer = memory_file(64, {20, 40}, 0x22);  // page 21 of the layer is a hole
  mem.overlay_file_pages(layer.get(), 20, 2);
  layer.reset();  // the mapping keeps the file
  uint8_t b = 0;
  EXPECT_TRUE(mem.read_obj(GuestAddress(20 * 4096), &b));
  EXPECT_EQ(b, 0x22);
  EXPECT_TRUE(mem.read_obj(GuestAddress(21 * 4096 + 100), &b));
  EXPECT_EQ(b, 0);  // the layer's hole masks the base's data
  EXPECT_TRUE(mem.read_obj(GuestAddress(22 * 4096), &b));
  EXPECT_EQ(b, 0x11);
  EXPECT_TRUE(mem.read_obj(GuestAddress(40 * 4096), &b));
  EXPECT_EQ(b, 0);  // outside the overlaid range
  // Overlaid pages are file pages until written; they count as data.
  EXPECT_EQ(set_pages(mem.written_pages()), std::vector<uint64_t>{});
  EXPECT_EQ(set_pages(mem.data_pages()), (std::vector<uint64_t>{20, 21, 22}));
  EXPECT_TRUE(mem.write_obj(GuestAddress(21 * 4096), uint8_t{1}));
  EXPECT_EQ(set_pages(mem.written_pages()), std::vector<uint64_t>{21});

  UniqueFd other = memory_file(64, {}, 0);
  EXPECT_THROW(mem.overlay_file_pages(other.get(), 63, 2), Error);
  EXPECT_THROW(mem.overlay_file_pages(other.get(), 65, 1), Error);
  EXPECT_THROW(mem.overlay_file_pages(other.get(), 0, 0), Error);
  EXPECT_THROW(mem.overlay_file_pages(other.get(), 1, ~0ull), Error);
  EXPECT_NO_THROW(mem.overlay_file_pages(other.get(), 63, 1));
}

TEST(GuestMemoryFilePrivate, BootRamIsAllWrittenAndDataWhereTouched) {
  auto mem = GuestMemory::create(64 * 4096);
  EXPECT_FALSE(mem.is_file_private());
  EXPECT_EQ(mem.memfd(), -1);
  EXPECT_EQ(set_pages(mem.written_pages()).size(), 64u);
  EXPECT_EQ(set_pages(mem.data_pages()), std::vector<uint64_t>{});
  EXPECT_TRUE(mem.write_obj(GuestAddress(5 * 4096 + 9), uint32_t{1}));
  EXPECT_EQ(set_pages(mem.data_pages()), std::vector<uint64_t>{5});
  UniqueFd other = memory_file(64, {}, 0);
  EXPECT_THROW(mem.overlay_file_pages(other.get(), 0, 1), Error);
}

TEST(GuestMemoryFilePrivate, MovedFromMemoryGivesUpTheMapping) {
  auto mem = GuestMemory::map_file_private(memory_file(8, {1}, 0x33), 8 * 4096);
  GuestMemory moved = std::move(mem);
  EXPECT_TRUE(moved.is_file_private());
  uint8_t b = 0;
  EXPECT_TRUE(moved.read_obj(GuestAddress(4096), &b));
  EXPECT_EQ(b, 0x33);
  mem = GuestMemory::create(4096);
  EXPECT_EQ(mem.size(), 4096u);
}

TEST(GuestMemoryHugePages, AlignUp) {
  constexpr uint64_t k2M = GuestMemory::kHugePageSize;
  EXPECT_EQ(GuestMemory::align_up(0, k2M), 0u);
  EXPECT_EQ(GuestMemory::align_up(1, k2M), k2M);
  EXPECT_EQ(GuestMemory::align_up(k2M, k2M), k2M);
  EXPECT_EQ(GuestMemory::align_up(k2M + 4096, k2M), 2 * k2M);
  EXPECT_EQ(GuestMemory::align_up(0x7f00'0000'1000, 4096), 0x7f00'0000'1000u);
}

// KVM maps a 2 MiB page only where host and guest addresses agree modulo 2 MiB: every region
// of RAM on huge pages starts 2 MiB-aligned, also the one above the MMIO hole.
TEST(GuestMemoryHugePages, RegionsStartOn2MiBBoundaries) {
  for (uint64_t size : std::vector<uint64_t>{16 << 20, 130 << 20, (3ull << 30) + (4 << 20)}) {
    auto mem = GuestMemory::create(size);
    EXPECT_TRUE(mem.huge_pages()) << "this host's kernel refused MADV_HUGEPAGE";
    for (const MemoryRegion& r : mem.regions()) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(r.host) % GuestMemory::kHugePageSize, 0u) << size;
      EXPECT_EQ(r.guest_base.value() % GuestMemory::kHugePageSize, 0u);
    }
    // The whole size is usable and zeroed; nothing past it is RAM.
    uint8_t b = 1;
    EXPECT_TRUE(mem.read_obj(
        GuestAddress(mem.regions().back().guest_base.value() + mem.regions().back().size - 1), &b));
    EXPECT_EQ(b, 0);
  }
}

TEST(GuestMemoryHugePages, NoHugePagesIsAskedFor) {
  auto mem = GuestMemory::create(16 << 20, false);
  EXPECT_FALSE(mem.huge_pages());
  EXPECT_TRUE(mem.write_obj(GuestAddress(5 << 20), uint64_t{7}));
  auto moved = std::move(mem);
  EXPECT_FALSE(moved.huge_pages());
  EXPECT_TRUE(GuestMemory::create(16 << 20).huge_pages());
}

// A snapshot of booted RAM reads what was touched: a write inside one 2 MiB block makes at
// most that block data (all 512 pages of it when the kernel gave it a huge page), nothing else.
TEST(GuestMemoryHugePages, DataPagesStayWithinTheTouchedBlock) {
  constexpr uint64_t kPagesPer2M = GuestMemory::kHugePageSize / 4096;
  auto mem = GuestMemory::create(8 << 20);
  EXPECT_EQ(set_pages(mem.data_pages()), std::vector<uint64_t>{});
  EXPECT_TRUE(mem.write_obj(GuestAddress((2 << 20) + 5 * 4096), uint32_t{1}));
  std::vector<uint64_t> data = set_pages(mem.data_pages());
  ASSERT_FALSE(data.empty());
  EXPECT_TRUE(std::find(data.begin(), data.end(), kPagesPer2M + 5) != data.end());
  EXPECT_GE(data.front(), kPagesPer2M);
  EXPECT_LT(data.back(), 2 * kPagesPer2M);
}

// The opt-in restore on huge pages: the file's data, a diff layer's and the guest's writes
// since, all in new anonymous memory; the copy is independent of the file mapping.
TEST(GuestMemoryHugePages, CopyToHugePagesKeepsEveryByte) {
  constexpr uint64_t kPages = 1024;  // 4 MiB: two huge pages
  auto mem = GuestMemory::map_file_private(memory_file(kPages, {3, 600}, 0xaa), kPages * 4096);
  UniqueFd layer = memory_file(kPages, {601}, 0xbb);
  mem.overlay_file_pages(layer.get(), 601, 1);
  EXPECT_TRUE(mem.write_obj(GuestAddress(700 * 4096 + 8), uint64_t{0x1234}));
  GuestMemory copy = mem.copy_to_huge_pages();
  EXPECT_FALSE(copy.is_file_private());
  EXPECT_TRUE(copy.huge_pages());
  EXPECT_EQ(copy.size(), mem.size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.regions()[0].host) % GuestMemory::kHugePageSize, 0u);
  auto byte_at = [&copy](uint64_t addr) {
    uint8_t b = 0xff;
    EXPECT_TRUE(copy.read_obj(GuestAddress(addr), &b));
    return b;
  };
  EXPECT_EQ(byte_at(3 * 4096), 0xaa);
  EXPECT_EQ(byte_at(3 * 4096 + 4095), 0xaa);
  EXPECT_EQ(byte_at(600 * 4096 + 17), 0xaa);
  EXPECT_EQ(byte_at(601 * 4096), 0xbb);
  EXPECT_EQ(byte_at(4 * 4096), 0);
  EXPECT_EQ(byte_at((kPages - 1) * 4096), 0);
  uint64_t v = 0;
  EXPECT_TRUE(copy.read_obj(GuestAddress(700 * 4096 + 8), &v));
  EXPECT_EQ(v, 0x1234u);
  // Independent: a write to the copy leaves the original alone.
  EXPECT_TRUE(copy.write_obj(GuestAddress(3 * 4096), uint8_t{1}));
  uint8_t orig = 0;
  EXPECT_TRUE(mem.read_obj(GuestAddress(3 * 4096), &orig));
  EXPECT_EQ(orig, 0xaa);
}

TEST(GuestAddress, CheckedAddDetectsWrap) {
  EXPECT_FALSE(GuestAddress(~0ull).checked_add(1).has_value());
  EXPECT_EQ(GuestAddress(1).checked_add(2)->value(), 3u);
}

// Prefetch maps exactly the asked ranges (shared file pages, no private copy) and keeps the
// bytes; a range outside the memory is refused.
TEST(GuestMemoryFilePrivate, PrefetchMapsOnlyTheRanges) {
  auto mem = GuestMemory::map_file_private(memory_file(64, {3, 10}, 0x5a), 64 * 4096);
  std::vector<std::pair<uint64_t, uint64_t>> ranges = {{2, 3}, {10, 1}, {60, 4}};
  PrefetchResult r = prefetch_pages(mem, ranges);
  EXPECT_EQ(r.pages, 8u);
  EXPECT_EQ(r.ranges, 3u);
  EXPECT_TRUE(r.populated);
  EXPECT_EQ(set_pages(mem.resident_pages()), (std::vector<uint64_t>{2, 3, 4, 10, 60, 61, 62, 63}));
  EXPECT_EQ(set_pages(mem.written_pages()), std::vector<uint64_t>{});
  uint8_t b = 0;
  EXPECT_TRUE(mem.read_obj(GuestAddress(10 * 4096), &b));
  EXPECT_EQ(b, 0x5a);
  std::vector<std::pair<uint64_t, uint64_t>> past = {{63, 2}};
  EXPECT_THROW(prefetch_pages(mem, past), Error);
  EXPECT_THROW(prefetch_pages(GuestMemory::create(1 << 20), ranges), Error);
}

TEST(GuestMemoryFilePrivate, PrefetchWithoutPopulateMapsNothing) {
  // The readahead alone (a KVM pre-fault maps the pages afterwards): nothing is mapped yet.
  auto mem = GuestMemory::map_file_private(memory_file(64, {3, 10}, 0x5a), 64 * 4096);
  std::vector<std::pair<uint64_t, uint64_t>> ranges = {{2, 3}, {10, 1}};
  PrefetchResult r = prefetch_pages(mem, ranges, /*populate=*/false);
  EXPECT_EQ(r.pages, 4u);
  EXPECT_FALSE(r.populated);
  EXPECT_EQ(r.populate_ms, 0);
  EXPECT_EQ(set_pages(mem.resident_pages()), std::vector<uint64_t>{});
}

}  // namespace
}  // namespace wisp
