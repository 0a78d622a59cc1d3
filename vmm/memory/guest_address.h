// A guest-physical address. A distinct type so that guest addresses, host pointers and sizes
// cannot be mixed up; arithmetic is explicit and overflow-checked where it matters.
#pragma once

#include <cstdint>
#include <optional>

namespace wisp {

class GuestAddress {
 public:
  constexpr GuestAddress() = default;
  constexpr explicit GuestAddress(uint64_t value) : value_(value) {}

  constexpr uint64_t value() const { return value_; }

  // Returns nullopt when the sum wraps past 2^64 (a hostile guest can ask for that).
  constexpr std::optional<GuestAddress> checked_add(uint64_t offset) const {
    uint64_t out;
    if (__builtin_add_overflow(value_, offset, &out)) return std::nullopt;
    return GuestAddress(out);
  }
  // Unchecked: only for VMM-chosen constants known to be in range.
  constexpr GuestAddress operator+(uint64_t offset) const { return GuestAddress(value_ + offset); }

  constexpr auto operator<=>(const GuestAddress&) const = default;

 private:
  uint64_t value_ = 0;
};

}  // namespace wisp
