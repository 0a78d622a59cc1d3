// The shape of a thread kind's seccomp allow-list (internal to vmm/jail/): plain data that
// seccomp_filter.cc turns into a libseccomp filter. Each seccomp_<kind>_table.cc defines one
// table; every entry says which code makes the call, so a reviewer can judge it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "vmm/jail/seccomp_filter.h"

namespace wisp::jail {

// One argument condition: (arg[index] & mask) == value.
struct ArgCheck {
  unsigned index = 0;
  uint64_t mask = 0;
  uint64_t value = 0;
};

// A syscall allowed when all its checks hold (none: always). Several entries of one name
// allow the call when any of them matches.
struct SyscallRule {
  const char* name;  // as libseccomp spells it ("epoll_pwait")
  const char* why;   // who calls it
  ArgCheck checks[2] = {};
  size_t check_count = 0;
};

// An ioctl request number allowed on any fd. The number is written out rather than taken
// from <linux/kvm.h> (only vmm/kvm/ includes that); the unit test compares each KVM one with
// the header's.
struct IoctlRule {
  const char* name;  // "KVM_RUN"
  uint32_t request;
  const char* why;
};

struct SeccompTable {
  std::span<const SyscallRule> syscalls;
  std::span<const IoctlRule> ioctls;  // all under one "ioctl" syscall entry
};

const SeccompTable& seccomp_table(ThreadKind kind);
const SeccompTable& loop_seccomp_table();
const SeccompTable& vcpu_seccomp_table();
const SeccompTable& control_seccomp_table();
const SeccompTable& block_seccomp_table();

// Helpers for the tables.
constexpr SyscallRule allow(const char* name, const char* why) { return {name, why, {}, 0}; }
constexpr SyscallRule allow_if(const char* name, const char* why, ArgCheck a) {
  return {name, why, {a, {}}, 1};
}
constexpr SyscallRule allow_if(const char* name, const char* why, ArgCheck a, ArgCheck b) {
  return {name, why, {a, b}, 2};
}
// Argument `index`, an int, equals `value` (upper 32 bits ignored, as the kernel does).
constexpr ArgCheck int_eq(unsigned index, uint32_t value) { return {index, 0xffffffffu, value}; }
// None of `bits` is set in argument `index`.
constexpr ArgCheck bits_clear(unsigned index, uint64_t bits) { return {index, bits, 0}; }
// All of `bits` are set in argument `index`.
constexpr ArgCheck bits_set(unsigned index, uint64_t bits) { return {index, bits, bits}; }

// KVM ioctl numbers, encoded as <asm-generic/ioctl.h> does (type 0xAE, KVMIO): direction,
// size of the argument struct (its C size), number.
constexpr uint32_t kvm_ioc(uint32_t dir, uint32_t nr, uint32_t size) {
  return (dir << 30) | (size << 16) | (0xAEu << 8) | nr;
}
constexpr uint32_t kvm_io(uint32_t nr) { return kvm_ioc(0, nr, 0); }
constexpr uint32_t kvm_iow(uint32_t nr, uint32_t size) { return kvm_ioc(1, nr, size); }
constexpr uint32_t kvm_ior(uint32_t nr, uint32_t size) { return kvm_ioc(2, nr, size); }
constexpr uint32_t kvm_iowr(uint32_t nr, uint32_t size) { return kvm_ioc(3, nr, size); }

}  // namespace wisp::jail
