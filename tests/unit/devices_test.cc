#include <gtest/gtest.h>

#include <string>

#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"

namespace wisp {
namespace {

struct CountingIrq : IrqLine {
  int edges = 0;
  void trigger() override { ++edges; }
};

class SerialTest : public ::testing::Test {
 protected:
  CountingIrq irq;
  std::string out;
  Serial uart{irq, [this](std::span<const uint8_t> b) { out.append(b.begin(), b.end()); }};
  uint8_t in(uint64_t reg) {
    uint8_t v = 0;
    uart.read(reg, {&v, 1});
    return v;
  }
  void put(uint64_t reg, uint8_t v) { uart.write(reg, {&v, 1}); }
};

TEST_F(SerialTest, TransmitGoesToTheSink) {
  for (char c : std::string("ok\n")) put(0, static_cast<uint8_t>(c));
  EXPECT_EQ(out, "ok\n");
  EXPECT_EQ(in(5) & 0x60, 0x60);  // THR empty and idle
}

TEST_F(SerialTest, DivisorLatchDoesNotTransmit) {
  put(3, 0x80);  // DLAB
  put(0, 0x01);
  put(1, 0x00);
  EXPECT_EQ(in(0), 0x01);
  put(3, 0x03);
  EXPECT_TRUE(out.empty());
}

TEST_F(SerialTest, LoopbackProbePattern) {
  put(4, 0x10 | 0x0a);            // LOOP | RTS | OUT2
  EXPECT_EQ(in(6) & 0xf0, 0x90);  // CTS | DCD
}

TEST_F(SerialTest, ReceiveRaisesOneEdgeAndDrains) {
  put(1, 0x01);  // enable receive interrupt
  const uint8_t msg[] = {'l', 's', '\r'};
  uart.enqueue_input(msg);
  EXPECT_EQ(irq.edges, 1);
  EXPECT_EQ(in(2) & 0x0f, 0x04);
  EXPECT_EQ(in(5) & 0x01, 0x01);
  EXPECT_EQ(in(0), 'l');
  EXPECT_EQ(in(0), 's');
  EXPECT_EQ(in(0), '\r');
  EXPECT_EQ(in(5) & 0x01, 0);
  EXPECT_EQ(in(2) & 0x0f, 0x01);  // no interrupt pending
  uart.enqueue_input(msg);
  EXPECT_EQ(irq.edges, 2);  // a new edge after the line went idle
}

TEST_F(SerialTest, ThrEmptyInterruptOnEnableAndAfterEachBatch) {
  put(1, 0x02);  // enable THRE interrupt: fires at once, the register is empty
  EXPECT_EQ(irq.edges, 1);
  EXPECT_EQ(in(2) & 0x0f, 0x02);  // reading IIR acknowledges it
  EXPECT_EQ(in(2) & 0x0f, 0x01);
  put(0, 'a');
  EXPECT_EQ(irq.edges, 2);
  put(0, 'b');  // still pending: no extra edge
  EXPECT_EQ(irq.edges, 2);
}

TEST_F(SerialTest, FifoEnabledShowsInIir) {
  put(2, 0x01);
  EXPECT_EQ(in(2) & 0xc0, 0xc0);
}

TEST_F(SerialTest, InputIsBounded) {
  std::string big(Serial::kMaxPendingInput + 100, 'x');
  uart.enqueue_input({reinterpret_cast<const uint8_t*>(big.data()), big.size()});
  size_t n = 0;
  while (in(5) & 0x01) {
    in(0);
    ++n;
  }
  EXPECT_EQ(n, Serial::kMaxPendingInput);
}

TEST(I8042, SelfTestAndResetCommand) {
  int resets = 0;
  I8042 kbc([&] { ++resets; });
  auto cmd = [&](uint8_t v) { kbc.write(4, {&v, 1}); };
  auto rd = [&](uint64_t off) {
    uint8_t v = 0;
    kbc.read(off, {&v, 1});
    return v;
  };
  EXPECT_EQ(rd(4) & 0x01, 0);  // output buffer empty
  cmd(0xaa);
  EXPECT_EQ(rd(4) & 0x01, 1);
  EXPECT_EQ(rd(0), 0x55);
  cmd(0x60);
  uint8_t cfg = 0x47;
  kbc.write(0, {&cfg, 1});
  cmd(0x20);
  EXPECT_EQ(rd(0), 0x47);
  EXPECT_EQ(resets, 0);
  cmd(0xfe);
  EXPECT_EQ(resets, 1);
}

TEST(I8042, GuestCannotGrowTheOutputQueue) {
  I8042 kbc([] {});
  uint8_t v = 0xaa;
  for (int i = 0; i < 10000; ++i) kbc.write(4, {&v, 1});
  int n = 0;
  uint8_t s = 0;
  while (kbc.read(4, {&s, 1}), s & 1) {
    kbc.read(0, {&v, 1});
    ++n;
  }
  EXPECT_LE(n, 16);
}

}  // namespace
}  // namespace wisp
