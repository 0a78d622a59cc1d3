#include "vmm/machine/console.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "base/error.h"
#include "base/file_io.h"

namespace wisp {
ConsoleWatch::Event ConsoleWatch::finish_line() {
  Event ev = Event::kNone;
  auto panic = line_.find("Kernel panic - not syncing");
  if (line_.find("---[ end Kernel panic") != std::string::npos) {
    ev = Event::kPanicEnd;
  } else if (panic != std::string::npos) {
    panic_line_ = line_.substr(panic);
    while (!panic_line_.empty() && (panic_line_.back() == '\r' || panic_line_.back() == ' '))
      panic_line_.pop_back();
    ev = Event::kPanic;
  } else if (line_.find("reboot: System halted") != std::string::npos ||
             line_.find("reboot: Power down") != std::string::npos) {
    ev = Event::kHalt;
  }
  line_.clear();
  return ev;
}

ConsoleWatch::Event ConsoleWatch::feed(std::span<const uint8_t> bytes) {
  Event first = Event::kNone;
  for (uint8_t b : bytes) {
    if (b == '\n') {
      Event ev = finish_line();
      if (first == Event::kNone) first = ev;
    } else if (line_.size() < kMaxLine) {
      line_.push_back(static_cast<char>(b));
    }
  }
  return first;
}

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  if (!isatty(fd) || tcgetattr(fd, &saved_) != 0) return;
  termios raw = saved_;
  cfmakeraw(&raw);
  raw.c_oflag |= OPOST | ONLCR;  // keep host-side output (our own messages) readable
  if (tcsetattr(fd, TCSANOW, &raw) == 0) active_ = true;
}

RawTerminal::~RawTerminal() {
  if (active_) tcsetattr(fd_, TCSANOW, &saved_);
}

Console::Console(const ConsoleConfig& config, StopRequest& stop) : config_(config), stop_(stop) {
  if (config.output == ConsoleOutput::kFile) {
    // 0600: the guest's output is the guest's (and the VM owner's) business.
    file_ = UniqueFd(::open(config.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!file_) throw Error(errno_message("console file " + config.file));
  }
  filter_output_ = config.filter == ConsoleFilter::kAlways ||
                   (config.filter == ConsoleFilter::kIfTerminal && isatty(config.out_fd));
}

Console::~Console() = default;

void Console::output(std::span<const uint8_t> bytes) {
  // A console that is gone (a closed pipe) loses the output; the guest keeps running.
  if (config_.output == ConsoleOutput::kStdio) write_stdio(bytes);
  if (file_) write_file(bytes);
  switch (watch_.feed(bytes)) {
    case ConsoleWatch::Event::kPanic:
      stop_.note_panic(watch_.panic_line());
      break;
    case ConsoleWatch::Event::kPanicEnd:
      stop_.request(StopReason::kCrash, watch_.panic_line());
      break;
    case ConsoleWatch::Event::kHalt:
      stop_.request(StopReason::kPowerOff, "guest halted");
      break;
    case ConsoleWatch::Event::kNone:
      break;
  }
}

void Console::write_stdio(std::span<const uint8_t> bytes) {
  if (!filter_output_) {
    write_all(config_.out_fd, bytes);
    return;
  }
  filtered_.clear();
  filter_.filter(bytes, filtered_);
  write_all(config_.out_fd, filtered_);
}

void Console::write_file(std::span<const uint8_t> bytes) {
  const uint64_t max = config_.file_max_bytes;
  if (file_bytes_ >= max) return;
  size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), max - file_bytes_));
  write_all(file_.get(), bytes.first(n));
  file_bytes_ += n;
  if (file_bytes_ < max) return;
  std::string note = "\n[wisp: console file reached its cap of " + std::to_string(max) +
                     " bytes (--console-max-bytes); further output is dropped]\n";
  write_all(file_.get(), note);
}

void Console::start_input(EventLoop& loop, ToGuest to_guest) {
  if (config_.output != ConsoleOutput::kStdio) return;
  to_guest_ = std::move(to_guest);
  terminal_ = std::make_unique<RawTerminal>(config_.in_fd);
  int fl = fcntl(config_.in_fd, F_GETFL);
  if (fl >= 0 && fcntl(config_.in_fd, F_SETFL, fl | O_NONBLOCK) == 0) {
    try {
      loop.add(config_.in_fd, [this, &loop](uint32_t) { on_readable(loop); });
    } catch (const Error&) {
      // A regular file or /dev/null (epoll refuses those): no console input.
    }
    fcntl(config_.in_fd, F_SETFL, fl);
  }
}

void Console::stop_input() { terminal_.reset(); }

void Console::on_readable(EventLoop& loop) {
  uint8_t buf[256];
  ssize_t n = ::read(config_.in_fd, buf, sizeof(buf));
  if (n <= 0) {
    // End of input (or an error): the guest keeps running, we just stop listening.
    loop.remove(config_.in_fd);
    return;
  }
  input(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
}

void Console::input(std::span<const uint8_t> bytes) {
  for (uint8_t b : bytes) {
    if (escape_ && (b == 'x' || b == 'X')) {
      stop_.request(StopReason::kPowerOff, "Ctrl-A x on the console");
      return;
    }
    escape_ = b == 0x01;
  }
  if (to_guest_) to_guest_(bytes);
}

}  // namespace wisp
