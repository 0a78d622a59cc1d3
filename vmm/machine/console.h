// The host end of the guest's serial console: where the guest's output goes (the VMM's stdout, a
// file, or nowhere), what the user types (stdin, in a raw terminal, into the serial port), the
// Ctrl-A x escape that ends the VM from the keyboard as in QEMU, and the console watch that turns
// the kernel's last words (a panic, a halt) into a stop request.
#pragma once

#include <termios.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "base/unique_fd.h"
#include "vmm/devices/terminal_filter.h"
#include "vmm/event/event_loop.h"
#include "vmm/machine/stop_request.h"

namespace wisp {

// Reads the guest console as it goes by and recognises the kernel's last words: a panic, or a
// halt/power-off. A kernel with ACPI powers off through the S5 sleep register (PmControl), an
// explicit exit; a kernel without ACPI (wisp's own guest) cannot: it prints "reboot: System
// halted" and halts every CPU inside KVM, where the VMM never sees an exit. For those the
// console line is the one signal there is, so the VMM acts on it. A panic is recognised the
// same way. TODO(pvpanic): an explicit panic device would not depend on the console.
class ConsoleWatch {
 public:
  enum class Event {
    kNone,
    kPanic,     // "Kernel panic - not syncing: ..." (the backtrace follows)
    kPanicEnd,  // "---[ end Kernel panic ...": the kernel has said all it will say
    kHalt,      // "reboot: System halted" / "reboot: Power down"
  };

  // Feeds console bytes; returns the first event a completed line triggers (kNone otherwise).
  Event feed(std::span<const uint8_t> bytes);

  // The panic line, once kPanic has been seen ("Kernel panic - not syncing: ...").
  const std::string& panic_line() const { return panic_line_; }

 private:
  Event finish_line();
  static constexpr size_t kMaxLine = 512;
  std::string line_;
  std::string panic_line_;
};

// Puts a terminal into raw mode for the guest console and restores it on destruction, so
// keys like Ctrl-C reach the guest instead of killing the VMM.
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

enum class ConsoleOutput { kStdio, kNone, kFile };

// What a console file may grow to by default: a guest printing in a loop must not fill the
// host's disk. Enough for hours of kernel and service logs.
constexpr uint64_t kDefaultConsoleFileMaxBytes = 16ull << 20;

// When the guest's output on kStdio goes through a TerminalFilter.
enum class ConsoleFilter {
  kIfTerminal,  // when out_fd is a terminal (a pipe or file gets the bytes as they are)
  kAlways,
  kNever,
};

struct ConsoleConfig {
  ConsoleOutput output = ConsoleOutput::kStdio;
  std::string file;  // for kFile: created or truncated
  // For kFile: output past this many bytes is dropped, after one line saying so.
  uint64_t file_max_bytes = kDefaultConsoleFileMaxBytes;
  ConsoleFilter filter = ConsoleFilter::kIfTerminal;
  // For kStdio: where the guest's output goes and what the user types (tests pass pipes).
  int in_fd = STDIN_FILENO;
  int out_fd = STDOUT_FILENO;
};

// Thread rules: output() is the serial port's sink, so it runs on vCPU threads under the port's
// lock, which is what serialises the watch. start_input(), the input handler and stop_input()
// run on the event-loop thread. A stop request may come from either.
class Console {
 public:
  using ToGuest = std::function<void(std::span<const uint8_t>)>;

  // Opens the output file for kFile: throws Error naming it.
  Console(const ConsoleConfig& config, StopRequest& stop);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // Bytes the guest wrote to the serial port: to the terminal filtered (see ConsoleFilter),
  // to the file as they are, up to its cap.
  void output(std::span<const uint8_t> bytes);

  // For kStdio (a no-op otherwise): puts a terminal on `in_fd` into raw mode and sends what is
  // typed there, through input(), to `to_guest`, with `loop` watching `in_fd`. A regular file or
  // /dev/null on `in_fd` gives no input (epoll refuses those).
  void start_input(EventLoop& loop, ToGuest to_guest);
  // Gives the terminal back as it was.
  void stop_input();

  // Bytes typed on the host: Ctrl-A x stops the machine (and drops the chunk it ends),
  // everything else, Ctrl-A included, goes to the guest.
  void input(std::span<const uint8_t> bytes);

 private:
  void on_readable(EventLoop& loop);
  void write_stdio(std::span<const uint8_t> bytes);
  void write_file(std::span<const uint8_t> bytes);

  const ConsoleConfig config_;
  StopRequest& stop_;
  UniqueFd file_;  // for kFile
  // Output state, under the serial port's lock like watch_.
  uint64_t file_bytes_ = 0;  // written to file_ so far
  bool filter_output_ = false;
  TerminalFilter filter_;
  std::string filtered_;  // filter_'s output buffer, kept to reuse its allocation
  ConsoleWatch watch_;    // under the serial port's lock (see the thread rules)
  ToGuest to_guest_;
  std::unique_ptr<RawTerminal> terminal_;
  bool escape_ = false;  // the last byte typed was Ctrl-A
};

}  // namespace wisp
