// Saved KVM state of a vCPU and of a VM (in-kernel irqchip, PIT, KVM clock) as plain data:
// byte images of KVM's x86 structures plus a few integers. No fds, no host pointers, no
// <linux/kvm.h> (DESIGN.md rules 1 and 5). A State read from disk is untrusted: its validate()
// checks every limit, throwing wisp::Error naming the field that is wrong, and restore paths
// call it first.
//
// The images are in KVM's x86_64 ABI layout (fixed by the kernel's UAPI, checked against
// <linux/kvm.h> by static_asserts in kvm_state.cc). Only vmm/kvm/ interprets them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vmm/kvm/cpu_types.h"

namespace wisp {

// Sizes of the KVM structures the images hold.
struct KvmImageSize {
  static constexpr size_t kRegs = 144;          // struct kvm_regs
  static constexpr size_t kSregs = 312;         // struct kvm_sregs
  static constexpr size_t kFpu = 416;           // struct kvm_fpu
  static constexpr size_t kXsaveMin = 4096;     // struct kvm_xsave without KVM_CAP_XSAVE2 extras
  static constexpr size_t kXsaveMax = 1 << 20;  // sanity cap for untrusted images
  static constexpr size_t kXcrs = 392;          // struct kvm_xcrs
  static constexpr size_t kLapic = 1024;        // struct kvm_lapic_state
  static constexpr size_t kVcpuEvents = 64;     // struct kvm_vcpu_events
  static constexpr size_t kDebugRegs = 128;     // struct kvm_debugregs
  static constexpr size_t kIrqchip = 512;       // the `chip` union of struct kvm_irqchip
  static constexpr size_t kPit = 112;           // struct kvm_pit_state2
  static constexpr size_t kMaxMsrs = 1024;      // sanity cap for untrusted MSR lists
};

// KVM_MP_STATE_* values a saved x86 vCPU may be in (RUNNABLE .. SIPI_RECEIVED).
constexpr uint32_t kMaxX86MpState = 4;

struct VcpuState {
  uint32_t id = 0;
  std::vector<uint8_t> regs;
  std::vector<uint8_t> sregs;  // also carries EFER, APIC base and a pending interrupt
  std::vector<uint8_t> fpu;    // redundant with xsave; kept for hosts without XSAVE
  std::vector<uint8_t> xsave;  // KVM_GET_XSAVE2 size (>= 4 KiB) or the 4 KiB kvm_xsave
  std::vector<uint8_t> xcrs;
  std::vector<uint8_t> lapic;
  std::vector<uint8_t> vcpu_events;
  std::vector<uint8_t> debug_regs;
  uint32_t mp_state = 0;
  // In the order they are restored: ascending index, so TSC (0x10) precedes TSC_DEADLINE.
  std::vector<MsrEntry> msrs;
  uint32_t tsc_khz = 0;  // 0: the host could not tell (then no scaling on restore)
  bool operator==(const VcpuState&) const = default;

  // Throws Error("vCPU state: <field> ...") unless every image has the size KVM expects, the
  // MP state is an x86 one and no MSR is listed twice.
  void validate() const;
  // Throws Error unless this host's KVM can take the xsave image: `host_xsave_size` is what it
  // reads for KVM_SET_XSAVE (Kvm::xsave_size()). A smaller saved image is zero-padded (its
  // XSTATE_BV says which parts it has); a larger one is from a CPU with features this host
  // lacks.
  void check_xsave_fits(size_t host_xsave_size) const;
};

struct VmState {
  std::vector<uint8_t> pic_master;  // KVM_IRQCHIP_PIC_MASTER image
  std::vector<uint8_t> pic_slave;   // KVM_IRQCHIP_PIC_SLAVE image
  std::vector<uint8_t> ioapic;      // KVM_IRQCHIP_IOAPIC image
  std::vector<uint8_t> pit;         // kvm_pit_state2
  uint64_t clock_ns = 0;            // KVM_GET_CLOCK: kvmclock nanoseconds at save time
  uint32_t clock_flags = 0;         // KVM_CLOCK_* flags reported at save time (informational)
  bool operator==(const VmState&) const = default;

  // Throws Error("VM state: <field> ...") unless every image has the size KVM expects.
  void validate() const;
};

// Whether wisp saves MSR `index` (when KVM lists it in KVM_GET_MSR_INDEX_LIST). An allowlist:
// TSC, TSC_ADJUST, TSC_DEADLINE, SPEC_CTRL, SYSENTER/SYSCALL MSRs, KERNEL_GS_BASE, TSC_AUX,
// MISC_ENABLE, MTRRs and PAT, XSS, and the KVM paravirtual MSRs (kvmclock, async PF, steal
// time, PV EOI, poll control). EFER, FS/GS base and APIC base travel in sregs; feature and
// machine-check MSRs are host properties, not guest state.
bool should_save_msr(uint32_t index);

}  // namespace wisp
