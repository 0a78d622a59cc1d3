#include "vmm/arch/cpuid.h"

#include <bit>

#include "vmm/arch/cpuid_baseline.h"

namespace wisp {
namespace {

constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
// Without it Linux calibrates the LAPIC timer against the PIT, which fails verification on a
// slow or noisy host and leaves the guest without a working per-CPU timer.
constexpr uint32_t kLeaf1EcxTscDeadline = 1u << 24;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
constexpr uint32_t kAmdCmpLegacy = 1u << 1;  // 0x80000001 ECX: core multi-processing legacy mode
constexpr uint32_t kCpuidFlagIndexed = 1;    // KVM_CPUID_FLAG_SIGNIFCANT_INDEX

// Bits of APIC id needed to number `n` cores.
uint32_t id_bits(uint32_t n) { return n <= 1 ? 0 : static_cast<uint32_t>(std::bit_width(n - 1)); }

void set_topology_leaf(CpuidEntry& e, uint32_t vcpu_id, uint32_t vcpus) {
  // Level 0 = SMT (1 thread per core), level 1 = core (all vCPUs), then "invalid".
  e.edx = vcpu_id;
  switch (e.index) {
    case 0:
      e.eax = 0;
      e.ebx = 1;
      e.ecx = 0 | (1u << 8);
      break;
    case 1:
      e.eax = id_bits(vcpus);
      e.ebx = vcpus;
      e.ecx = 1 | (2u << 8);
      break;
    default:
      e.eax = 0;
      e.ebx = 0;
      e.ecx = e.index;
      break;
  }
}

}  // namespace

const CpuidEntry* find_cpuid(const CpuidEntries& entries, uint32_t function, uint32_t index) {
  for (const auto& e : entries)
    if (e.function == function && (!(e.flags & kCpuidFlagIndexed) || e.index == index)) return &e;
  return nullptr;
}

CpuidEntries vcpu_cpuid(const CpuidEntries& supported, uint32_t vcpu_id, uint32_t vcpus,
                        const CpuidOptions& options) {
  // The baseline masks KVM's features; the edits below (topology, hypervisor bit) apply to
  // either model alike.
  CpuidEntries out = options.model == CpuModel::kX86_64_v2 ? x86_64_v2_cpuid(supported) : supported;
  for (auto& e : out) {
    switch (e.function) {
      case 0x1:
        e.ecx |= kLeaf1EcxHypervisor;
        if (options.tsc_deadline_timer) e.ecx |= kLeaf1EcxTscDeadline;
        // EBX: [31:24] initial APIC id, [23:16] logical processors per package.
        e.ebx = (e.ebx & 0xffff) | (vcpu_id << 24) | ((vcpus & 0xff) << 16);
        if (vcpus > 1)
          e.edx |= kLeaf1EdxHtt;
        else
          e.edx &= ~kLeaf1EdxHtt;
        break;
      case 0x4:
        // Deterministic cache parameters: [31:26] cores per package - 1, [25:14] threads
        // sharing this cache - 1 (we share nothing but say one package).
        if ((e.eax & 0x1f) != 0) {
          e.eax &= 0x3fff;
          e.eax |= ((vcpus - 1) & 0x3f) << 26;
        }
        break;
      case 0xb:
      case 0x1f:
        set_topology_leaf(e, vcpu_id, vcpus);
        break;
      case 0x80000001:
        if (vcpus > 1)
          e.ecx |= kAmdCmpLegacy;
        else
          e.ecx &= ~kAmdCmpLegacy;
        break;
      case 0x80000008:
        // ECX: [7:0] cores - 1, [15:12] APIC id bits for the core number.
        e.ecx = (e.ecx & ~0xf0ffu) | ((vcpus - 1) & 0xff) | (id_bits(vcpus) << 12);
        break;
      case 0x8000001e:
        // Extended APIC id, compute unit (core) id, node id: one core per unit, one node.
        e.eax = vcpu_id;
        e.ebx = vcpu_id & 0xff;
        e.ecx = 0;
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace wisp
