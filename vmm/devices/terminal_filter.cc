#include "vmm/devices/terminal_filter.h"

namespace wisp {
namespace {

constexpr uint8_t kEsc = 0x1b, kBel = 0x07, kCan = 0x18, kSub = 0x1a, kDel = 0x7f;

bool is_sgr_parameter(uint8_t b) { return (b >= '0' && b <= '9') || b == ';' || b == ':'; }

// The C0 controls a terminal shows as layout, not as commands.
bool is_layout_control(uint8_t b) { return b == '\t' || b == '\n' || b == '\r' || b == '\b'; }

}  // namespace

void TerminalFilter::filter(std::span<const uint8_t> in, std::string& out) {
  for (uint8_t b : in) {
    switch (state_) {
      case State::kText:
        text_byte(b, out);
        break;
      case State::kEscape:
        if (b < 0x20 && b != kEsc && b != kCan && b != kSub) {
          // A control ends the sequence and is itself text (a newline stays a newline).
          drop_sequence();
          text_byte(b, out);
        } else {
          escape_byte(b);
        }
        break;
      case State::kEscapeInter:
        if (b >= 0x20 && b <= 0x2f) break;
        drop_sequence();
        if (b == kEsc)
          state_ = State::kEscape;
        else if (b < 0x20 || b >= 0x7f)
          text_byte(b, out);
        break;
      case State::kCsi:
        csi_byte(b, out);
        break;
      case State::kString:
        string_byte(b);
        break;
      case State::kStringEscape:
        // ESC \ (ST) ends the string; terminals end it at any other ESC too, which then
        // starts the next sequence.
        drop_sequence();
        if (b != '\\') {
          state_ = State::kEscape;
          escape_byte(b);
        }
        break;
    }
  }
}

void TerminalFilter::text_byte(uint8_t b, std::string& out) {
  if (pending_c2_) {
    pending_c2_ = false;
    utf8_left_ = 0;
    if (b >= 0x80 && b <= 0x9f) {  // U+0080..U+009F: a C1 control in UTF-8
      ++dropped_;
      return;
    }
    out.push_back(static_cast<char>(0xc2));
    if ((b & 0xc0) == 0x80) {
      out.push_back(static_cast<char>(b));
      return;
    }
  }
  if (utf8_left_ > 0) {
    if ((b & 0xc0) == 0x80) {
      out.push_back(static_cast<char>(b));
      --utf8_left_;
      return;
    }
    utf8_left_ = 0;  // a broken character; b is read afresh
  }
  if (b == kEsc) {
    state_ = State::kEscape;
  } else if (b < 0x20 || b == kDel) {
    if (is_layout_control(b))
      out.push_back(static_cast<char>(b));
    else
      ++dropped_;
  } else if (b >= 0x80 && b <= 0x9f) {
    ++dropped_;  // outside a character: a raw C1 control, which 8-bit terminals act on
  } else if (b == 0xc2) {
    pending_c2_ = true;  // decided by the next byte
    utf8_left_ = 1;
  } else {
    out.push_back(static_cast<char>(b));
    if (b >= 0xc0) utf8_left_ = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : 1;
  }
}

void TerminalFilter::escape_byte(uint8_t b) {
  switch (b) {
    case '[':
      state_ = State::kCsi;
      csi_.assign("\x1b[");
      csi_is_sgr_ = true;
      return;
    case ']':  // OSC
    case 'P':  // DCS
    case 'X':  // SOS
    case '^':  // PM
    case '_':  // APC
      state_ = State::kString;
      string_bytes_ = 0;
      return;
    case kEsc:  // the first ESC led nowhere; this one starts afresh
      ++dropped_;
      return;
    default:
      if (b >= 0x20 && b <= 0x2f) {
        state_ = State::kEscapeInter;
        return;
      }
      drop_sequence();  // a final byte (ESC c, ESC 7, ...), CAN or SUB
  }
}

void TerminalFilter::csi_byte(uint8_t b, std::string& out) {
  if (b >= 0x40 && b <= 0x7e) {  // the final byte
    if (b == 'm' && csi_is_sgr_) {
      out.append(csi_);
      out.push_back('m');
      state_ = State::kText;
    } else {
      drop_sequence();
    }
  } else if (b >= 0x20 && b <= 0x3f) {  // parameters and intermediates
    if (!is_sgr_parameter(b) || csi_.size() >= kMaxCsi) csi_is_sgr_ = false;
    if (csi_is_sgr_) csi_.push_back(static_cast<char>(b));
  } else if (b == kEsc) {
    drop_sequence();
    state_ = State::kEscape;
  } else if (b != kDel) {
    // A control or a high byte in the middle: the sequence is over, the byte is text.
    drop_sequence();
    if (b != kCan && b != kSub) text_byte(b, out);
  }
}

void TerminalFilter::string_byte(uint8_t b) {
  if (b == kEsc) {
    state_ = State::kStringEscape;
  } else if (b == kBel || b == kCan || b == kSub || ++string_bytes_ > kMaxString) {
    drop_sequence();  // BEL ends an OSC as ST does; CAN and SUB cancel any sequence
  }
}

void TerminalFilter::drop_sequence() {
  ++dropped_;
  state_ = State::kText;
  csi_.clear();
}

}  // namespace wisp
