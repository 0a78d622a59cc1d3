#include <gtest/gtest.h>

#include <vector>

#include "base/error.h"
#include "vmm/bus/io_bus.h"

namespace wisp {
namespace {

struct Recorder : BusDevice {
  std::vector<std::pair<uint64_t, uint8_t>> writes;
  uint8_t next_read = 0x42;
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (auto& b : data) b = static_cast<uint8_t>(next_read + offset);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.push_back({offset, data[0]});
  }
};

TEST(IoBus, DispatchesWithRangeRelativeOffsets) {
  IoBus bus("pio");
  auto dev = std::make_shared<Recorder>();
  bus.insert(0x3f8, 8, dev);
  uint8_t b = 0x55;
  EXPECT_TRUE(bus.write(0x3fb, {&b, 1}));
  ASSERT_EQ(dev->writes.size(), 1u);
  EXPECT_EQ(dev->writes[0].first, 3u);
  uint8_t r = 0;
  EXPECT_TRUE(bus.read(0x3f9, {&r, 1}));
  EXPECT_EQ(r, 0x43);
}

TEST(IoBus, UnownedReadsAreAllOnes) {
  IoBus bus("pio");
  bus.insert(0x3f8, 8, std::make_shared<Recorder>());
  uint8_t r[2] = {0, 0};
  EXPECT_FALSE(bus.read(0x80, r));
  EXPECT_EQ(r[0], 0xff);
  EXPECT_EQ(r[1], 0xff);
  EXPECT_FALSE(bus.read(0x3f7, {r, 1}));
  EXPECT_FALSE(bus.read(0x400, {r, 1}));
}

TEST(IoBus, AccessStraddlingTheEndIsNotDispatched) {
  IoBus bus("mmio");
  auto dev = std::make_shared<Recorder>();
  bus.insert(0x1000, 0x10, dev);
  uint8_t data[4] = {1, 2, 3, 4};
  EXPECT_FALSE(bus.write(0x100e, data));
  EXPECT_TRUE(dev->writes.empty());
}

TEST(IoBus, RejectsOverlapsAndEmptyOrWrappingRanges) {
  IoBus bus("mmio");
  bus.insert(0x1000, 0x100, std::make_shared<Recorder>());
  EXPECT_THROW(bus.insert(0x10ff, 1, std::make_shared<Recorder>()), Error);
  EXPECT_THROW(bus.insert(0xf00, 0x101, std::make_shared<Recorder>()), Error);
  EXPECT_THROW(bus.insert(0x1000, 0x10, std::make_shared<Recorder>()), Error);
  EXPECT_THROW(bus.insert(0x5000, 0, std::make_shared<Recorder>()), Error);
  EXPECT_THROW(bus.insert(~0ull - 1, 4, std::make_shared<Recorder>()), Error);
  EXPECT_NO_THROW(bus.insert(0x1100, 0x10, std::make_shared<Recorder>()));
  EXPECT_NO_THROW(bus.insert(0xf00, 0x100, std::make_shared<Recorder>()));
}

}  // namespace
}  // namespace wisp
