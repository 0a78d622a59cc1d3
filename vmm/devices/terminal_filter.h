// What the guest's console output may do to the host terminal it is shown on. A guest writes
// whatever it likes to its serial port; a terminal acts on escape sequences in it: OSC can set
// the window title, write the clipboard (OSC 52) or, on some terminals, run commands; DCS, APC
// and PM reach terminal extensions; CSI sequences move the cursor, query the terminal (whose
// answer arrives as if the user had typed it) or reprogram keys; C1 controls start the same
// sequences in one byte. TerminalFilter passes text and colours (SGR: ESC [ params m) and drops
// every other sequence, whole.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace wisp {

// A streaming filter: a sequence split across two chunks of output is recognised all the same.
// Kept: printable bytes, UTF-8 (except C1 controls it encodes, U+0080..U+009F), tab, newline,
// carriage return, backspace, and SGR sequences of digits, ';' and ':' only. Dropped: every
// other C0 control, DEL, C1 controls (raw 0x80..0x9F outside a UTF-8 character, or encoded),
// and every escape sequence but SGR, from ESC to its last byte (a string sequence up to its
// terminator, ST or BEL, or up to a CAN or SUB that cancels it).
// Not thread-safe: one owner feeds it in order.
class TerminalFilter {
 public:
  // Appends to `out` what of `in` may reach the terminal.
  void filter(std::span<const uint8_t> in, std::string& out);

  // Sequences dropped so far (a count for diagnostics and tests).
  uint64_t dropped() const { return dropped_; }

 private:
  enum class State {
    kText,
    kEscape,        // after ESC
    kEscapeInter,   // ESC, intermediates (0x20..0x2F): a 2-byte-plus sequence, dropped
    kCsi,           // after ESC [: collecting parameters
    kString,        // inside OSC, DCS, SOS, PM or APC: dropped up to ST or BEL
    kStringEscape,  // ESC inside a string: '\' makes ST
  };
  // SGR parameters are short; anything longer is not a colour and is dropped.
  static constexpr size_t kMaxCsi = 64;
  // A string sequence the guest never terminates would hide the rest of its output (a panic
  // message too); after this many bytes the filter goes back to text. The string's start was
  // dropped, so the terminal never sees a sequence to continue.
  static constexpr size_t kMaxString = 4096;

  void text_byte(uint8_t b, std::string& out);
  void escape_byte(uint8_t b);
  void csi_byte(uint8_t b, std::string& out);
  void string_byte(uint8_t b);
  void drop_sequence();

  State state_ = State::kText;
  std::string csi_;          // the CSI sequence held until its final byte decides
  bool csi_is_sgr_ = true;   // only digits, ';' and ':' so far
  size_t string_bytes_ = 0;  // in kString: bytes dropped so far
  int utf8_left_ = 0;        // continuation bytes the current UTF-8 character still needs
  bool pending_c2_ = false;  // a 0xC2 lead byte held: it may start an encoded C1 control
  uint64_t dropped_ = 0;
};

}  // namespace wisp
