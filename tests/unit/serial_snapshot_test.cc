// Serial::save/restore: registers, pending input and the interrupt survive a round trip into a
// fresh UART; impossible states are refused with the field named.
#include <gtest/gtest.h>

#include <string>

#include "base/error.h"
#include "tests/unit/expect_error.h"
#include "vmm/devices/serial.h"

namespace wisp {
namespace {

struct CountingIrq : IrqLine {
  int edges = 0;
  void trigger() override { ++edges; }
};

// One UART with its IRQ and output.
struct Uart {
  CountingIrq irq;
  std::string out;
  Serial dev{irq, [this](std::span<const uint8_t> b) { out.append(b.begin(), b.end()); }};
  uint8_t in(uint64_t reg) {
    uint8_t v = 0;
    dev.read(reg, {&v, 1});
    return v;
  }
  void put(uint64_t reg, uint8_t v) { dev.write(reg, {&v, 1}); }
};

std::string error_of(Serial& s, const SerialState& st) {
  try {
    s.restore(st);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SerialSnapshot, RoundTripKeepsRegistersInputAndInterrupt) {
  Uart a;
  a.put(3, 0x80);  // DLAB: divisor 0x0201
  a.put(0, 0x01);
  a.put(1, 0x02);
  a.put(3, 0x03);  // 8N1
  a.put(4, 0x0b);  // DTR | RTS | OUT2
  a.put(7, 0x5a);
  a.put(2, 0x01);  // FIFO on
  a.put(1, 0x01);  // receive interrupt
  const uint8_t typed[] = {'h', 'i'};
  a.dev.enqueue_input(typed);
  ASSERT_EQ(a.irq.edges, 1);

  SerialState saved = a.dev.save();
  EXPECT_EQ(saved.ier, 0x01);
  EXPECT_EQ(saved.lcr, 0x03);
  EXPECT_EQ(saved.mcr, 0x0b);
  EXPECT_EQ(saved.scr, 0x5a);
  EXPECT_EQ(saved.dll, 0x01);
  EXPECT_EQ(saved.dlm, 0x02);
  EXPECT_TRUE(saved.fifo_enabled);
  EXPECT_EQ(saved.rx, std::vector<uint8_t>({'h', 'i'}));

  Uart b;
  b.dev.restore(saved);
  EXPECT_EQ(b.irq.edges, 1);  // the receive interrupt is pending: raised again
  EXPECT_EQ(b.dev.save(), saved);
  EXPECT_EQ(b.in(2), 0xc4);  // FIFO bits | receive data available
  EXPECT_EQ(b.in(3), 0x03);
  EXPECT_EQ(b.in(4), 0x0b);
  EXPECT_EQ(b.in(7), 0x5a);
  EXPECT_EQ(b.in(5) & 0x01, 0x01);
  EXPECT_EQ(b.in(0), 'h');
  EXPECT_EQ(b.in(0), 'i');
  EXPECT_EQ(b.in(2) & 0x0f, 0x01);  // drained: nothing pending
  b.put(3, 0x83);
  EXPECT_EQ(b.in(0), 0x01);
  EXPECT_EQ(b.in(1), 0x02);
}

TEST(SerialSnapshot, LatchedThrEmptyInterruptSurvives) {
  Uart a;
  a.put(1, 0x02);  // THRE interrupt, latched at once
  SerialState saved = a.dev.save();
  EXPECT_TRUE(saved.thr_empty_pending);
  Uart b;
  b.dev.restore(saved);
  EXPECT_EQ(b.irq.edges, 1);
  EXPECT_EQ(b.in(2) & 0x0f, 0x02);
  EXPECT_EQ(b.in(2) & 0x0f, 0x01);  // acknowledged by the read, as before the snapshot
}

TEST(SerialSnapshot, NothingPendingRaisesNothing) {
  Uart a;
  a.put(1, 0x01);  // receive interrupt enabled, no input
  Uart b;
  b.dev.restore(a.dev.save());
  EXPECT_EQ(b.irq.edges, 0);
  const uint8_t c = 'x';
  b.dev.enqueue_input({&c, 1});
  EXPECT_EQ(b.irq.edges, 1);  // the next input still interrupts
}

TEST(SerialSnapshot, RefusesImpossibleStates) {
  Uart b;
  SerialState s;
  s.ier = 0x10;
  EXPECT_NE(error_of(b.dev, s).find("ier"), std::string::npos);
  s = {};
  s.mcr = 0x20;
  EXPECT_NE(error_of(b.dev, s).find("mcr"), std::string::npos);
  s = {};
  s.rx.assign(Serial::kMaxPendingInput + 1, 'x');
  EXPECT_NE(error_of(b.dev, s).find("rx"), std::string::npos);
  s.rx.resize(Serial::kMaxPendingInput);
  EXPECT_EQ(error_of(b.dev, s), "");
}

TEST(SerialSnapshot, ValidateNamesTheField) {
  using testutil::expect_error;
  EXPECT_NO_THROW(SerialState{}.validate());
  SerialState s;
  s.ier = 0x10;
  expect_error([&] { s.validate(); }, {"serial state: ier = 0x10"});
  s = {};
  s.mcr = 0x20;
  expect_error([&] { s.validate(); }, {"serial state: mcr = 0x20"});
  s = {};
  s.rx.assign(Serial::kMaxPendingInput + 1, 'x');
  expect_error([&] { s.validate(); }, {"serial state: rx holds"});
}

}  // namespace
}  // namespace wisp
