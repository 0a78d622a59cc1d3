// The fixed-width little-endian fields of wisp's own snapshot files (the state file's frame,
// the working set): one reading and one writing of them, and one shape for a refusal, which
// names the file.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"

namespace wisp::snapshot {

// The `n`-byte (1 to 8) little-endian unsigned value at `p`.
inline uint64_t load_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Writes the low `n` bytes (1 to 8) of `v` at `p`, little-endian.
inline void store_le(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// A file refused: "FILE: WHAT".
[[noreturn]] inline void reject_file(const std::string& file, const std::string& what) {
  throw Error(file + ": " + what);
}

}  // namespace wisp::snapshot
