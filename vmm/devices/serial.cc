#include "vmm/devices/serial.h"

#include <cstdio>
#include <string>

#include "base/error.h"

namespace wisp {
namespace {
// Register offsets (DLAB = divisor latch access bit in LCR selects DLL/DLM at 0/1).
constexpr uint64_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kIerRxData = 0x01, kIerThrEmpty = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThrEmpty = 0x02, kIirRxData = 0x04, kIirFifo = 0xc0;
constexpr uint8_t kLsrDataReady = 0x01, kLsrThrEmpty = 0x20, kLsrIdle = 0x40;
constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08, kMcrLoop = 0x10;
constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;
// Bits a register can hold (writes mask the rest away), for SerialState::validate.
constexpr uint8_t kIerMask = 0x0f, kMcrMask = 0x1f;

std::string bad_bits(const char* field, uint8_t value, uint8_t mask) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "serial state: %s = 0x%02x has bits outside 0x%02x", field, value,
                mask);
  return buf;
}
}  // namespace

// Interrupt model: ISA IRQ 4 is edge-triggered, so we send one edge each time "an enabled
// source is pending" goes from false to true. Linux's handler reads IIR until it says "none",
// which brings the state back to false, so the next condition produces a new edge.
void Serial::update_interrupt() {
  bool pending = interrupt_id() != kIirNone;
  if (pending && !irq_asserted_) irq_.trigger();
  irq_asserted_ = pending;
}

uint8_t Serial::interrupt_id() const {
  if ((ier_ & kIerRxData) && !rx_.empty()) return kIirRxData;
  if ((ier_ & kIerThrEmpty) && thr_empty_pending_) return kIirThrEmpty;
  return kIirNone;
}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  for (auto& b : data) b = read_register(offset);
  update_interrupt();
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  // Wider-than-byte accesses to a UART make no sense; take the low byte like hardware would.
  if (!data.empty()) write_register(offset, data[0]);
  update_interrupt();
}

uint8_t Serial::read_register(uint64_t offset) {
  switch (offset) {
    case kData: {
      if (lcr_ & kLcrDlab) return dll_;
      if (rx_.empty()) return 0;
      uint8_t b = rx_.front();
      rx_.pop_front();
      return b;
    }
    case kIer:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIir: {
      uint8_t id = interrupt_id();
      if (id == kIirThrEmpty) thr_empty_pending_ = false;  // reading IIR acknowledges THRE
      return id | (fifo_enabled_ ? kIirFifo : 0);
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return (rx_.empty() ? 0 : kLsrDataReady) | kLsrThrEmpty | kLsrIdle;
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback (the driver's probe checks this): outputs come back as modem inputs.
        return ((mcr_ & kMcrDtr) ? kMsrDsr : 0) | ((mcr_ & kMcrRts) ? kMsrCts : 0) |
               ((mcr_ & kMcrOut1) ? kMsrRi : 0) | ((mcr_ & kMcrOut2) ? kMsrDcd : 0);
      }
      return kMsrDcd | kMsrDsr | kMsrCts;
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
}

void Serial::write_register(uint64_t offset, uint8_t value) {
  switch (offset) {
    case kData:
      if (lcr_ & kLcrDlab) {
        dll_ = value;
        return;
      }
      if (mcr_ & kMcrLoop) {
        if (rx_.size() < kMaxPendingInput) rx_.push_back(value);
      } else {
        sink_(std::span<const uint8_t>(&value, 1));
      }
      // The byte is "sent" at once: the holding register is empty again.
      thr_empty_pending_ = true;
      return;
    case kIer:
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
        return;
      }
      // Enabling THRE while the register is empty raises the interrupt at once (8250 semantics
      // the driver's start_tx relies on).
      if ((value & kIerThrEmpty) && !(ier_ & kIerThrEmpty)) thr_empty_pending_ = true;
      ier_ = value & kIerMask;
      return;
    case kIir:  // FCR on write
      fifo_enabled_ = value & 0x01;
      if (value & 0x02) rx_.clear();  // clear receive FIFO
      return;
    case kLcr:
      lcr_ = value;
      return;
    case kMcr:
      mcr_ = value & kMcrMask;
      return;
    case kScr:
      scr_ = value;
      return;
    default:
      return;  // LSR/MSR are read-only
  }
}

void Serial::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  for (uint8_t b : bytes) {
    if (rx_.size() >= kMaxPendingInput) break;
    rx_.push_back(b);
  }
  update_interrupt();
}

SerialState Serial::save() const {
  std::lock_guard lock(mu_);
  return SerialState{ier_,
                     lcr_,
                     mcr_,
                     scr_,
                     dll_,
                     dlm_,
                     fifo_enabled_,
                     thr_empty_pending_,
                     std::vector<uint8_t>(rx_.begin(), rx_.end())};
}

void SerialState::validate() const {
  if (ier & ~kIerMask) throw Error(bad_bits("ier", ier, kIerMask));
  if (mcr & ~kMcrMask) throw Error(bad_bits("mcr", mcr, kMcrMask));
  if (rx.size() > Serial::kMaxPendingInput)
    throw Error("serial state: rx holds " + std::to_string(rx.size()) +
                " pending input bytes (limit " + std::to_string(Serial::kMaxPendingInput) + ")");
}

void Serial::restore(const SerialState& s) {
  s.validate();
  std::lock_guard lock(mu_);
  ier_ = s.ier;
  lcr_ = s.lcr;
  mcr_ = s.mcr;
  scr_ = s.scr;
  dll_ = s.dll;
  dlm_ = s.dlm;
  fifo_enabled_ = s.fifo_enabled;
  thr_empty_pending_ = s.thr_empty_pending;
  rx_.assign(s.rx.begin(), s.rx.end());
  // The edge sent before the snapshot may or may not have reached the guest's handler; one
  // more is at worst a spurious interrupt (the handler finds IIR "none"), one fewer a hang.
  irq_asserted_ = false;
  update_interrupt();
}

}  // namespace wisp
