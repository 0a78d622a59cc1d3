#include "snapshot/working_set.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/error.h"
#include "tests/unit/expect_error.h"

namespace wisp::snapshot {
namespace {

namespace fs = std::filesystem;
using testutil::expect_error;

WorkingSet sample() {
  WorkingSet ws;
  ws.memory_pages = 100;
  ws.ranges = {{0, 3}, {10, 1}, {50, 50}};
  return ws;
}

TEST(WorkingSetTest, RangesFromPageBitmap) {
  std::vector<bool> pages(12, false);
  for (int p : {0, 1, 2, 5, 9, 10, 11}) pages[p] = true;
  std::vector<PageRange> want = {{0, 3}, {5, 1}, {9, 3}};
  EXPECT_EQ(page_ranges(pages), want);
  EXPECT_TRUE(page_ranges(std::vector<bool>(8, false)).empty());
}

TEST(WorkingSetTest, RoundTrip) {
  WorkingSet ws = sample();
  std::vector<uint8_t> bytes = encode_working_set(ws);
  EXPECT_EQ(bytes.size(), kWorkingSetHeaderBytes + 3 * 16 + 8);
  WorkingSet back = parse_working_set(bytes, "ws");
  EXPECT_EQ(back.memory_pages, 100u);
  EXPECT_EQ(back.ranges, ws.ranges);
  EXPECT_EQ(back.pages(), 54u);
  // An empty set is valid (a guest that touched nothing new is not an error).
  WorkingSet empty;
  empty.memory_pages = 8;
  EXPECT_TRUE(parse_working_set(encode_working_set(empty), "ws").ranges.empty());
}

TEST(WorkingSetTest, RefusesBadRanges) {
  WorkingSet ws = sample();
  ws.ranges.push_back({99, 2});  // past the end, and overlapping
  expect_error([&] { validate_working_set(ws, "f"); }, {"f: ", "range 3"});
  ws = sample();
  ws.ranges[2] = {60, 41};
  expect_error([&] { validate_working_set(ws, "f"); }, {"past the memory's 100 pages"});
  ws = sample();
  ws.ranges[1] = {3, 1};  // adjacent to {0, 3}: should have been merged
  expect_error([&] { validate_working_set(ws, "f"); }, {"range 1", "adjacent"});
  ws = sample();
  std::swap(ws.ranges[0], ws.ranges[1]);
  expect_error([&] { validate_working_set(ws, "f"); }, {"unsorted"});
  ws = sample();
  ws.ranges[1].count = 0;
  expect_error([&] { validate_working_set(ws, "f"); }, {"empty"});
  ws = sample();
  ws.ranges[2] = {~0ull, 2};  // no overflow past the memory's end
  expect_error([&] { validate_working_set(ws, "f"); }, {"past the memory"});
  ws = sample();
  expect_error([&] { encode_working_set({0, ws.ranges}); }, {"past the memory's 0 pages"});
}

TEST(WorkingSetTest, RefusesBadFrames) {
  std::vector<uint8_t> good = encode_working_set(sample());
  expect_error([&] { parse_working_set(std::span(good).first(20), "f"); }, {"f: ", "truncated"});
  std::vector<uint8_t> b = good;
  b[0] = 'X';
  expect_error([&] { parse_working_set(b, "f"); }, {"bad magic"});
  b = good;
  b[8] = 2;
  expect_error([&] { parse_working_set(b, "f"); }, {"format 2.0", "re-create"});
  b = good;
  b[12] = 4;  // claims a fourth range
  expect_error([&] { parse_working_set(b, "f"); }, {"expected"});
  b = good;
  b[15] = 0xff;  // over the cap
  expect_error([&] { parse_working_set(b, "f"); }, {"more than the limit"});
  b = good;
  b[kWorkingSetHeaderBytes + 17] ^= 1;  // a range's bit flipped
  expect_error([&] { parse_working_set(b, "f"); }, {"checksum"});
  b = good;
  b.push_back(0);
  expect_error([&] { parse_working_set(b, "f"); }, {"size"});
}

TEST(WorkingSetTest, FileWrittenAndReadBack) {
  fs::path dir = fs::path(::testing::TempDir()) / ("wisp-ws-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_working_set(dir.string(), sample());
  std::string path = (dir / kWorkingSetFileName).string();
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(read_working_set(path, 100).ranges, sample().ranges);
  EXPECT_EQ(read_working_set(path, 0).memory_pages, 100u);
  expect_error([&] { read_working_set(path, 200); }, {path, "recorded for 100", "has 200"});
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(kWorkingSetHeaderBytes + 3);
    f.put('\x7f');
  }
  expect_error([&] { read_working_set(path, 100); }, {path, "checksum"});
  expect_error([&] { read_working_set((dir / "none").string(), 100); }, {"none"});
  fs::remove_all(dir);
}

TEST(WorkingSetTest, GuestPhysicalRangesFollowTheMemoryLayout) {
  // A 4 GiB guest: file pages [0, 0xC0000) are guest pages from 0, the rest continue at 4 GiB
  // (page 0x100000), past the MMIO hole.
  WorkingSet ws;
  ws.memory_pages = 0x100000;
  ws.ranges = {{0, 2}, {0xBFFFE, 4}, {0xD0000, 1}};
  std::vector<PageRange> want = {{0, 2}, {0xBFFFE, 2}, {0x100000, 2}, {0x110000, 1}};
  EXPECT_EQ(guest_physical_ranges(ws), want);
  // Below the hole nothing moves.
  EXPECT_EQ(guest_physical_ranges(sample()), sample().ranges);
}

}  // namespace
}  // namespace wisp::snapshot
