#include "vmm/vcpu/exit_handler.h"

#include <gtest/gtest.h>

#include <vector>

namespace wisp {
namespace {

struct Port : BusDevice {
  std::vector<uint8_t> written;
  int reads = 0;
  void read(uint64_t, std::span<uint8_t> data) override {
    ++reads;
    for (auto& b : data) b = 0x5a;
  }
  void write(uint64_t, std::span<const uint8_t> data) override {
    written.insert(written.end(), data.begin(), data.end());
  }
};

class ExitHandlerTest : public ::testing::Test {
 protected:
  IoBus pio{"pio"}, mmio{"mmio"};
  std::shared_ptr<Port> port = std::make_shared<Port>();
  ExitCounters counters;
  void SetUp() override {
    pio.insert(0x3f8, 8, port);
    mmio.insert(0xd0000000, 0x1000, port);
  }
};

TEST_F(ExitHandlerTest, PortOutReachesTheDevice) {
  uint8_t data[1] = {'A'};
  VcpuExit e{VcpuExit::Kind::kIo, true, 0x3f8, 1, 1, 0, data};
  auto v = handle_exit(e, pio, mmio, counters);
  EXPECT_TRUE(v.keep_running);
  EXPECT_EQ(port->written, std::vector<uint8_t>{'A'});
  EXPECT_EQ(counters.io_exits.load(), 1u);
}

TEST_F(ExitHandlerTest, RepOutsbIsSplitIntoCountAccesses) {
  uint8_t data[3] = {'a', 'b', 'c'};
  VcpuExit e{VcpuExit::Kind::kIo, true, 0x3f8, 1, 3, 0, data};
  EXPECT_TRUE(handle_exit(e, pio, mmio, counters).keep_running);
  EXPECT_EQ(port->written, (std::vector<uint8_t>{'a', 'b', 'c'}));
}

TEST_F(ExitHandlerTest, PortInFillsDataAndUnownedPortsReadAllOnes) {
  uint8_t data[2] = {0, 0};
  VcpuExit e{VcpuExit::Kind::kIo, false, 0x3f8, 1, 1, 0, {data, 1}};
  handle_exit(e, pio, mmio, counters);
  EXPECT_EQ(data[0], 0x5a);
  VcpuExit e2{VcpuExit::Kind::kIo, false, 0x70, 2, 1, 0, {data, 2}};
  EXPECT_TRUE(handle_exit(e2, pio, mmio, counters).keep_running);
  EXPECT_EQ(data[0], 0xff);
  EXPECT_EQ(data[1], 0xff);
  EXPECT_EQ(counters.unhandled_io.load(), 1u);
}

TEST_F(ExitHandlerTest, MalformedIoExitStopsInsteadOfOverrunning) {
  uint8_t data[1] = {0};
  VcpuExit e{VcpuExit::Kind::kIo, true, 0x3f8, 4, 2, 0, {data, 1}};  // claims 8 bytes, has 1
  auto v = handle_exit(e, pio, mmio, counters);
  EXPECT_FALSE(v.keep_running);
  EXPECT_EQ(v.reason, StopReason::kError);
  EXPECT_TRUE(port->written.empty());
}

TEST_F(ExitHandlerTest, MmioDispatchAndUnowned) {
  uint8_t data[4] = {1, 2, 3, 4};
  VcpuExit e{VcpuExit::Kind::kMmio, true, 0xd0000010, 4, 1, 0, data};
  EXPECT_TRUE(handle_exit(e, pio, mmio, counters).keep_running);
  EXPECT_EQ(port->written.size(), 4u);
  VcpuExit e2{VcpuExit::Kind::kMmio, false, 0xe0000000, 4, 1, 0, data};
  EXPECT_TRUE(handle_exit(e2, pio, mmio, counters).keep_running);
  EXPECT_EQ(counters.unhandled_mmio.load(), 1u);
}

TEST_F(ExitHandlerTest, StopsOnShutdownEventsAndErrors) {
  using K = VcpuExit::Kind;
  EXPECT_EQ(handle_exit({K::kShutdown}, pio, mmio, counters).reason, StopReason::kReset);
  VcpuExit ev{K::kSystemEvent};
  ev.code = VcpuExit::kEventShutdown;
  EXPECT_EQ(handle_exit(ev, pio, mmio, counters).reason, StopReason::kPowerOff);
  ev.code = VcpuExit::kEventReset;
  EXPECT_EQ(handle_exit(ev, pio, mmio, counters).reason, StopReason::kReset);
  ev.code = VcpuExit::kEventCrash;
  EXPECT_EQ(handle_exit(ev, pio, mmio, counters).reason, StopReason::kCrash);
  VcpuExit ie{K::kInternalError};
  ie.code = 1;
  auto v = handle_exit(ie, pio, mmio, counters);
  EXPECT_EQ(v.reason, StopReason::kError);
  EXPECT_NE(v.detail.find("internal error"), std::string::npos);
  VcpuExit fe{K::kFailEntry};
  fe.code = 0x80000021;
  EXPECT_NE(handle_exit(fe, pio, mmio, counters).detail.find("0x80000021"), std::string::npos);
  VcpuExit un{K::kUnknown};
  un.code = 99;
  EXPECT_FALSE(handle_exit(un, pio, mmio, counters).keep_running);
  EXPECT_TRUE(handle_exit({K::kInterrupted}, pio, mmio, counters).keep_running);
}

}  // namespace
}  // namespace wisp
