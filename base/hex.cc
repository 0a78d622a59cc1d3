#include "base/hex.h"

#include <cinttypes>
#include <cstdio>

namespace wisp {

std::string hex(uint64_t value) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, value);
  return buf;
}

std::string hex_bytes(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

}  // namespace wisp
