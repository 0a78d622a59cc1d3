// Puts a terminal into raw mode for the guest console and restores it on destruction, so
// keys like Ctrl-C reach the guest instead of killing the VMM.
#pragma once

#include <termios.h>

namespace wisp {

class RawTerminal {
 public:
  // No-op when `fd` is not a terminal.
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  bool active() const { return active_; }

 private:
  int fd_;
  bool active_ = false;
  termios saved_{};
};

}  // namespace wisp
