#include <gtest/gtest.h>

#include <vector>

#include "agent/huge_text.h"

namespace wisp::agent {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kHuge = 2 * kMiB;

HugeTextRange range_of(const std::vector<ImageSegment>& segments) {
  return huge_text_range(segments, kHuge);
}

// The agent's own layout (a static binary at 0x400000): headers, code, read-only data, then
// data. The aligned part of the first three moves; the data never does.
const std::vector<ImageSegment> kAgentLayout = {{0x400000, 0x668, false},
                                                {0x401000, 0x33aef9, false},
                                                {0x73c000, 0x102ea7, false},
                                                {0x83f300, 0x2be68, true}};

TEST(HugeTextRange, TheReadOnlyImageRoundedInwards) {
  HugeTextRange r = range_of(kAgentLayout);
  EXPECT_EQ(r.start, 0x400000u);
  EXPECT_EQ(r.size, 2 * kHuge);
}

TEST(HugeTextRange, SegmentsInAnyOrder) {
  std::vector<ImageSegment> shuffled = {kAgentLayout[2], kAgentLayout[3], kAgentLayout[1],
                                        kAgentLayout[0]};
  HugeTextRange r = range_of(shuffled);
  EXPECT_EQ(r.start, 0x400000u);
  EXPECT_EQ(r.size, 2 * kHuge);
}

TEST(HugeTextRange, AWritableSegmentEndsTheRun) {
  HugeTextRange r = range_of(
      {{0x400000, 3 * kMiB, false}, {0x700000, 0x1000, true}, {0x701000, 8 * kMiB, false}});
  EXPECT_EQ(r.start, 0x400000u);
  EXPECT_EQ(r.size, kHuge);  // [4 MiB, 6 MiB): the one whole block before the data
}

TEST(HugeTextRange, AGapEndsTheRun) {
  HugeTextRange r = range_of({{0x400000, 3 * kMiB, false}, {0x1000000, 8 * kMiB, false}});
  EXPECT_EQ(r.start, 0x400000u);
  EXPECT_EQ(r.size, kHuge);
}

TEST(HugeTextRange, NothingWholeToMove) {
  EXPECT_EQ(range_of({{0x401000, kMiB, false}}).size, 0u);
  EXPECT_EQ(range_of({{0x401000, 3 * kMiB, false}}).size, 0u);  // [0x401000, 0x701000)
  EXPECT_EQ(range_of({{0x400000, 4 * kMiB, true}}).size, 0u);
  EXPECT_EQ(range_of({}).size, 0u);
}

TEST(HugeTextRange, AnUnalignedStartMovesFromTheNextBlock) {
  HugeTextRange r = range_of({{0x401000, 6 * kMiB, false}});
  EXPECT_EQ(r.start, 0x600000u);
  EXPECT_EQ(r.size, 2 * kHuge);  // [6 MiB, 10 MiB) of [0x401000, 0xa01000)
}

}  // namespace
}  // namespace wisp::agent
