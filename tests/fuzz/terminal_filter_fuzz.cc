// libFuzzer target for the console's TerminalFilter (guest serial output on its way to the
// host's terminal). The input is cut into chunks at bytes chosen by its first byte, as serial
// writes arrive, and the output must hold the filter's promise whatever the guest wrote: every
// ESC starts an SGR sequence (ESC [ digits ; : m) and nothing else, no C0 control but tab,
// newline, carriage return and backspace, no DEL, and no C1 control, raw or UTF-8-encoded.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "vmm/devices/terminal_filter.h"

namespace {

void check(const std::string& out) {
  for (size_t i = 0; i < out.size(); ++i) {
    auto b = static_cast<uint8_t>(out[i]);
    if (b == 0x1b) {
      if (i + 1 >= out.size() || out[i + 1] != '[') std::abort();
      size_t j = i + 2;
      while (j < out.size() && ((out[j] >= '0' && out[j] <= '9') || out[j] == ';' || out[j] == ':'))
        ++j;
      if (j >= out.size() || out[j] != 'm') std::abort();
      i = j;
    } else if ((b < 0x20 && b != '\t' && b != '\n' && b != '\r' && b != '\b') || b == 0x7f) {
      std::abort();
    } else if (b == 0xc2 && i + 1 < out.size() && static_cast<uint8_t>(out[i + 1]) >= 0x80 &&
               static_cast<uint8_t>(out[i + 1]) <= 0x9f) {
      std::abort();  // U+0080..U+009F
    } else if (b >= 0x80 && b <= 0x9f) {
      // Only as a continuation byte of a character started by a lead byte before it.
      size_t lead = i;
      while (lead > 0 && (static_cast<uint8_t>(out[lead - 1]) & 0xc0) == 0x80 && i - lead < 3)
        --lead;
      if (lead == 0 || static_cast<uint8_t>(out[lead - 1]) < 0xc0) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 16;
  std::span<const uint8_t> in(data + 1, size - 1);
  wisp::TerminalFilter filter;
  std::string out;
  for (size_t at = 0; at < in.size(); at += chunk)
    filter.filter(in.subspan(at, std::min(chunk, in.size() - at)), out);
  check(out);
  return 0;
}
