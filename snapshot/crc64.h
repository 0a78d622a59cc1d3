// CRC-64/XZ: the ECMA-182 polynomial, reflected, init and final XOR all ones (the check value of
// "123456789" is 0x995dc9bbdf1939fa). The state file's checksum; table-driven, no dependency.
#pragma once

#include <cstdint>
#include <span>

namespace wisp::snapshot {

// Continues a CRC over `data`: crc64(b, crc64(a)) == crc64(a ++ b). Start with 0.
uint64_t crc64(std::span<const uint8_t> data, uint64_t crc = 0);

}  // namespace wisp::snapshot
