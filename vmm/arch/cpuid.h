// The CPUID a vCPU sees: what KVM supports on this host, with the VMM's edits: the hypervisor
// bit, this vCPU's APIC id, and a topology of `vcpus` single-thread cores in one package, for
// both Intel (leaves 0x4, 0xB, 0x1F) and AMD (0x80000001, 0x80000008, 0x8000001E) readers;
// with CpuModel::kX86_64_v2, masked down to the x86-64-v2 baseline first (cpuid_baseline.h).
#pragma once

#include <cstdint>

#include "vmm/kvm/cpu_types.h"

namespace wisp {

// What the host's KVM can do beyond KVM_GET_SUPPORTED_CPUID: KVM emulates the LAPIC's
// TSC-deadline mode itself and leaves it to the VMM to advertise it (KVM_CAP_TSC_DEADLINE_TIMER).
struct CpuidOptions {
  bool tsc_deadline_timer = false;
  // kHost: what KVM supports. kX86_64_v2: `--portable`, the baseline (cpuid_baseline.h).
  CpuModel model = CpuModel::kHost;
};

CpuidEntries vcpu_cpuid(const CpuidEntries& supported, uint32_t vcpu_id, uint32_t vcpus,
                        const CpuidOptions& options = {});

// Looks up leaf/subleaf in a list (nullptr if absent). Handy for tests and for checks.
const CpuidEntry* find_cpuid(const CpuidEntries& entries, uint32_t function, uint32_t index = 0);

}  // namespace wisp
