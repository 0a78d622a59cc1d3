// An 8250/16550A UART: the guest console on COM1 (0x3f8, IRQ 4). Output bytes go to a sink;
// input bytes come from the event loop and raise the receive interrupt, so an interactive shell
// works. Only what Linux's 8250 driver uses is modelled: divisor latch, IER/IIR/FCR/LCR/MCR/LSR/
// MSR/SCR, loopback for the driver's probe, THR-empty and data-ready interrupts.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "vmm/bus/io_bus.h"
#include "vmm/devices/irq_line.h"

namespace wisp {

// A UART's saved state: plain data, untrusted when it comes from a snapshot until validate()
// accepted it (Serial::restore calls it). LSR and MSR are not stored: this model derives them
// from the pending input and MCR. IIR is derived too, from IER, the input and the latched THRE
// interrupt.
struct SerialState {
  uint8_t ier = 0;  // only the low 4 bits exist
  uint8_t lcr = 0;
  uint8_t mcr = 0x08;  // only the low 5 bits exist
  uint8_t scr = 0;
  uint8_t dll = 0x0c;
  uint8_t dlm = 0;
  bool fifo_enabled = false;       // FCR bit 0, the only FCR bit that is kept (IIR reports it)
  bool thr_empty_pending = false;  // the THRE interrupt is latched (until IIR read or THR write)
  std::vector<uint8_t> rx;         // input the guest has not read yet, oldest first
  bool operator==(const SerialState&) const = default;

  // The register fields by name, for the snapshot codec, which codes `rx` itself.
  template <typename Self, typename F>
  static void fields(Self& self, F&& f) {
    f("ier", self.ier);
    f("lcr", self.lcr);
    f("mcr", self.mcr);
    f("scr", self.scr);
    f("dll", self.dll);
    f("dlm", self.dlm);
    f("fifo_enabled", self.fifo_enabled);
    f("thr_empty_pending", self.thr_empty_pending);
  }

  // Throws Error("serial state: <field> ...") for bits no register has or more pending input
  // than Serial::kMaxPendingInput.
  void validate() const;
};

class Serial final : public BusDevice {
 public:
  using Sink = std::function<void(std::span<const uint8_t>)>;
  static constexpr uint64_t kCom1Base = 0x3f8;
  static constexpr uint64_t kPortCount = 8;
  static constexpr uint32_t kCom1Irq = 4;
  // Input beyond this is dropped: a guest that never reads cannot make the VMM grow.
  static constexpr size_t kMaxPendingInput = 64 * 1024;

  Serial(IrqLine& irq, Sink sink) : irq_(irq), sink_(std::move(sink)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Called by the event loop with bytes typed on the host side.
  void enqueue_input(std::span<const uint8_t> bytes);

  // Snapshots. save() while the vCPUs are paused. restore() on a fresh Serial before any vCPU
  // runs: throws what s.validate() throws; sends an edge when an interrupt is pending
  // afterwards, so a guest that was about to read IIR is not left waiting.
  SerialState save() const;
  void restore(const SerialState& s);

 private:
  uint8_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint8_t value);
  uint8_t interrupt_id() const;
  // Sends an edge when an enabled condition becomes pending (see .cc).
  void update_interrupt();

  mutable std::mutex mu_;
  IrqLine& irq_;
  Sink sink_;
  std::deque<uint8_t> rx_;
  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0x08, scr_ = 0, dll_ = 0x0c, dlm_ = 0;
  bool fifo_enabled_ = false;
  bool thr_empty_pending_ = false;  // THRE interrupt latched until IIR read or THR write
  bool irq_asserted_ = false;       // last computed "some enabled source is pending"
};

}  // namespace wisp
