// The machine sizes wisp-vmm accepts on its command line. The manager checks a template's or
// an exec's options against the same numbers before it spawns a VMM.
#pragma once

#include <cstdint>

namespace wisp {

inline constexpr uint64_t kMinGuestMemBytes = 16ull << 20;
inline constexpr uint64_t kMaxGuestMemBytes = 64ull << 30;
// What the MP table and ACPI MADT describe (vmm/boot/mptable.h, vmm/acpi/acpi_tables.h); api/ holds
// it as part of the contract between the manager and wisp-vmm.
inline constexpr uint32_t kMaxGuestVcpus = 254;

}  // namespace wisp
