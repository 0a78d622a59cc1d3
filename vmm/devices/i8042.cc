#include "vmm/devices/i8042.h"

namespace wisp {
namespace {
constexpr uint8_t kStatusOutputFull = 0x01, kStatusSystemFlag = 0x04, kStatusCommand = 0x08;
constexpr uint8_t kCmdReadConfig = 0x20, kCmdWriteConfig = 0x60, kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdPortTest = 0xab, kCmdWriteAux = 0xd4, kCmdPulseReset = 0xfe;
constexpr uint8_t kSelfTestOk = 0x55, kKeyboardAck = 0xfa;
constexpr uint8_t kPortBTimer2Out = 0x20;
}  // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  uint8_t v = 0;
  if (offset == kCommandPort - kDataPort) {
    v = kStatusSystemFlag | kStatusCommand | (out_.empty() ? 0 : kStatusOutputFull);
  } else if (offset == 0) {
    if (!out_.empty()) {
      v = out_.front();
      out_.pop_front();
    }
  } else if (offset == 1) {
    // Port B: toggle the timer-2 output bit on each read so polling loops terminate.
    port_b_ ^= kPortBTimer2Out;
    v = port_b_;
  } else {
    v = 0xff;
  }
  for (auto& b : data) b = v;
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  uint8_t v = data[0];
  bool reset = false;
  {
    std::lock_guard lock(mu_);
    if (offset == kCommandPort - kDataPort) {
      switch (v) {
        case kCmdReadConfig:
          out_.push_back(control_);
          break;
        case kCmdWriteConfig:
        case kCmdWriteAux:
          pending_cmd_ = v;
          break;
        case kCmdSelfTest:
          out_.push_back(kSelfTestOk);
          break;
        case kCmdPortTest:
          out_.push_back(0x00);
          break;
        case kCmdPulseReset:
          reset = true;
          break;
        default:
          break;  // enable/disable ports and the like: nothing to model
      }
    } else if (offset == 0) {
      if (pending_cmd_ == kCmdWriteConfig) {
        control_ = v;
      } else if (pending_cmd_ == 0) {
        out_.push_back(kKeyboardAck);  // a byte for the keyboard: acknowledge, do nothing
      }
      pending_cmd_ = 0;
    } else if (offset == 1) {
      port_b_ = (port_b_ & kPortBTimer2Out) | (v & 0x0f);
    }
    if (out_.size() > 16) out_.pop_front();  // a guest spinning on commands cannot grow this
  }
  if (reset) on_reset_();
}

}  // namespace wisp
