// Helpers shared by the firmware tables the VMM writes for the guest (MP table, ACPI): packed
// structs appended as raw bytes, and the 8-bit checksum both specifications use (all bytes of a
// structure, checksum included, sum to zero).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace wisp {

// The byte that makes `n` bytes at `p` (with this byte counted as 0) sum to zero.
inline uint8_t table_checksum(const uint8_t* p, size_t n) {
  uint8_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum = static_cast<uint8_t>(sum + p[i]);
  return static_cast<uint8_t>(-sum);
}

template <typename T>
void append_bytes(std::vector<uint8_t>& out, const T& v) {
  auto p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

}  // namespace wisp
