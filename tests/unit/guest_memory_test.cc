#include "vmm/memory/guest_memory.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

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

TEST(GuestMemoryFilePrivate, MemfdRamIsAllWrittenAndDataWhereTouched) {
  auto mem = GuestMemory::create(64 * 4096);
  EXPECT_FALSE(mem.is_file_private());
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

}  // namespace
}  // namespace wisp
