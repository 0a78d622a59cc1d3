// Hexadecimal text for error messages and ids.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace wisp {

// "0x1f": an address, size or register value in a message.
std::string hex(uint64_t value);

// "00ff1a...": lower-case, two digits a byte, no prefix (ids, digests).
std::string hex_bytes(std::span<const uint8_t> bytes);

}  // namespace wisp
