// Save/restore round trip of the KVM state (vmm/kvm/vcpu_state.h) on a real, hardware-style
// KVM (the testbed on hosts without one):
//   tests/testbed/run -- build/cmake/tests/kvm_state_roundtrip
// A tiny 64-bit guest counts in memory, in %rbx and in %xmm0, and reports every 4096 rounds by
// OUT to ports 0x10 (%ebx) and 0x11 (%xmm0). The program stops the guest at an OUT, saves vCPU
// and VM state and memory, then restores clones into fresh VMs and checks that each continues
// from the saved counts instead of starting over. Exit status 0 = pass.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "base/error.h"
#include "vmm/arch/layout.h"
#include "vmm/boot/long_mode.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory/guest_memory.h"

namespace wisp {
namespace {

constexpr uint64_t kMemSize = 4 << 20;
constexpr uint64_t kCodeAddr = 0x100000;
constexpr uint64_t kCounterAddr = 0x200000;
constexpr uint64_t kRound = 4096;
constexpr int kRoundsBeforeSave = 5;
constexpr int kClones = 3;

// as --64 of:
//   mov %cr4,%rax; or $0x600,%rax; mov %rax,%cr4     (OSFXSR|OSXMMEXCPT: SSE usable)
//   mov $1,%eax; movq %rax,%xmm1; pxor %xmm0,%xmm0; xor %ebx,%ebx
// loop: incq 0x200000; inc %rbx; paddq %xmm1,%xmm0; test $0xfff,%ebx; jnz loop
//   mov %ebx,%eax; out %eax,$0x10; movd %xmm0,%eax; out %eax,$0x11; jmp loop
constexpr uint8_t kGuest[] = {
    0x0f, 0x20, 0xe0, 0x48, 0x0d, 0x00, 0x06, 0x00, 0x00, 0x0f, 0x22, 0xe0, 0xb8, 0x01, 0x00, 0x00,
    0x00, 0x66, 0x48, 0x0f, 0x6e, 0xc8, 0x66, 0x0f, 0xef, 0xc0, 0x31, 0xdb, 0x48, 0xff, 0x04, 0x25,
    0x00, 0x00, 0x20, 0x00, 0x48, 0xff, 0xc3, 0x66, 0x0f, 0xd4, 0xc1, 0xf7, 0xc3, 0xff, 0x0f, 0x00,
    0x00, 0x75, 0xe9, 0x89, 0xd8, 0xe7, 0x10, 0x66, 0x0f, 0x7e, 0xc0, 0xe7, 0x11, 0xeb, 0xdd};

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

struct Guest {
  GuestMemory mem;
  Vm vm;
  Vcpu vcpu;
};

// A VM with irqchip, PIT, `mem` mapped and one vCPU with CPUID set (what a restore needs).
Guest make_guest(const Kvm& kvm, GuestMemory mem) {
  Vm vm = kvm.create_vm();
  vm.set_identity_map_address(layout::kKvmIdentityMapAddr);
  vm.set_tss_address(layout::kKvmTssAddr);
  vm.create_irqchip();
  vm.create_pit();
  uint32_t slot = 0;
  for (const auto& r : mem.regions())
    vm.set_memory_region(slot++, r.guest_base.value(), r.size, r.host);
  Vcpu vcpu = vm.create_vcpu(0, kvm.vcpu_mmap_size());
  vcpu.set_cpuid(kvm.supported_cpuid());
  return Guest{std::move(mem), std::move(vm), std::move(vcpu)};
}

struct Out {
  uint16_t port = 0;
  uint32_t value = 0;
};

// Runs to the next OUT; throws on anything else.
Out run_to_out(Vcpu& vcpu) {
  for (;;) {
    VcpuExit e = vcpu.run();
    if (e.kind == VcpuExit::Kind::kInterrupted) continue;
    if (e.kind != VcpuExit::Kind::kIo || !e.is_write || e.size != 4)
      throw Error("unexpected exit kind " + std::to_string(static_cast<int>(e.kind)) + " code " +
                  std::to_string(e.code));
    Out o;
    o.port = static_cast<uint16_t>(e.addr);
    std::memcpy(&o.value, e.data.data(), 4);
    return o;
  }
}

uint64_t msr(const VcpuState& s, uint32_t index) {
  for (const auto& m : s.msrs)
    if (m.index == index) return m.value;
  return 0;
}

uint64_t counter(const GuestMemory& mem) {
  uint64_t v;
  std::memcpy(&v, mem.slice_or_throw(GuestAddress(kCounterAddr), 8, "counter").data(), 8);
  return v;
}

int run() {
  Kvm kvm = Kvm::open();
  const auto& support = kvm.state_support();
  std::printf(
      "flavor %s, xsave %zu bytes (XSAVE2 %s), %zu MSRs to save%s%s\n",
      kvm_flavor_name(detect_kvm_flavor()), support.xsave_size, support.has_xsave2 ? "yes" : "no",
      support.msr_indices.size(),
      support.msr_list_error.empty() ? "" : ", MSR list error: ", support.msr_list_error.c_str());

  // Boot the original and let it count.
  VcpuState vcpu_state;
  VmState vm_state;
  std::vector<uint8_t> memory(kMemSize);
  {
    Guest g = make_guest(kvm, GuestMemory::create(kMemSize));
    std::memcpy(g.mem.slice_or_throw(GuestAddress(kCodeAddr), sizeof(kGuest), "code").data(),
                kGuest, sizeof(kGuest));
    g.vcpu.init_fpu();
    g.vcpu.init_lapic_lints();
    g.vcpu.set_long_mode_entry(setup_long_mode(g.mem, kCodeAddr, 0));
    Out o;
    for (int round = 1; round <= kRoundsBeforeSave; ++round) {
      o = run_to_out(g.vcpu);
      check(o.port == 0x10 && o.value == round * kRound,
            "original round " + std::to_string(round) + ": port 0x10 = " + std::to_string(o.value));
      if (round == kRoundsBeforeSave) break;
      o = run_to_out(g.vcpu);
      check(o.port == 0x11 && o.value == round * kRound,
            "original xmm0 = " + std::to_string(o.value));
    }
    // Stopped at the OUT to 0x10 of the last round: finish it, then save.
    auto t0 = std::chrono::steady_clock::now();
    g.vcpu.complete_pending_io();
    vcpu_state = g.vcpu.save_state();
    vm_state = g.vm.save_state();
    double save_ms = ms_since(t0);
    std::memcpy(memory.data(), g.mem.regions()[0].host, kMemSize);
    std::printf(
        "saved in %.3f ms: %zu MSRs, xsave %zu bytes, tsc %u kHz, mp_state %u, clock %llu ns\n",
        save_ms, vcpu_state.msrs.size(), vcpu_state.xsave.size(), vcpu_state.tsc_khz,
        vcpu_state.mp_state, static_cast<unsigned long long>(vm_state.clock_ns));
    for (const auto& m : vcpu_state.msrs) std::printf(" %x", m.index);
    std::printf("\n");
    check(counter(g.mem) == kRoundsBeforeSave * kRound, "memory counter at save");
    // The original keeps running: it must not disturb the saved copy.
    o = run_to_out(g.vcpu);
    check(o.port == 0x11, "original continues after save");
  }

  // Restore clones and check each continues where the original was.
  for (int clone = 1; clone <= kClones; ++clone) {
    std::string name = "clone " + std::to_string(clone) + ": ";
    GuestMemory mem = GuestMemory::create(kMemSize);
    std::memcpy(mem.regions()[0].host, memory.data(), kMemSize);
    Guest g = make_guest(kvm, std::move(mem));
    auto t0 = std::chrono::steady_clock::now();
    g.vm.restore_state(vm_state);
    g.vcpu.restore_state(vcpu_state);
    double restore_ms = ms_since(t0);
    std::printf("%srestored in %.3f ms\n", name.c_str(), restore_ms);
    VcpuState again = g.vcpu.save_state();
    check(again.regs == vcpu_state.regs, name + "regs read back equal");
    check(again.sregs == vcpu_state.sregs, name + "sregs read back equal");
    check(again.msrs.size() == vcpu_state.msrs.size(), name + "same MSR count read back");
    check(msr(again, 0x10) >= msr(vcpu_state, 0x10),
          name + "guest TSC did not go back (saved " + std::to_string(msr(vcpu_state, 0x10)) +
              ", now " + std::to_string(msr(again, 0x10)) + ")");
    check(msr(again, 0x4b564d01) == msr(vcpu_state, 0x4b564d01), name + "kvmclock MSR restored");
    Out o = run_to_out(g.vcpu);
    check(o.port == 0x11 && o.value == kRoundsBeforeSave * kRound,
          name + "first OUT is xmm0 of round 5 (port " + std::to_string(o.port) + " = " +
              std::to_string(o.value) + ")");
    for (int round = kRoundsBeforeSave + 1; round <= kRoundsBeforeSave + 2; ++round) {
      o = run_to_out(g.vcpu);
      check(o.port == 0x10 && o.value == round * kRound,
            name + "round " + std::to_string(round) + " rbx = " + std::to_string(o.value));
      check(counter(g.mem) == round * kRound,
            name + "memory counter = " + std::to_string(counter(g.mem)));
      o = run_to_out(g.vcpu);
      check(o.port == 0x11 && o.value == round * kRound,
            name + "xmm0 = " + std::to_string(o.value));
    }
  }

  // Control: saved at the OUT exit without complete_pending_io(), the OUT is not finished in
  // any state userspace can read, so a clone executes it again (why save needs the call).
  {
    Guest g = make_guest(kvm, GuestMemory::create(kMemSize));
    std::memcpy(g.mem.slice_or_throw(GuestAddress(kCodeAddr), sizeof(kGuest), "code").data(),
                kGuest, sizeof(kGuest));
    g.vcpu.init_fpu();
    g.vcpu.init_lapic_lints();
    g.vcpu.set_long_mode_entry(setup_long_mode(g.mem, kCodeAddr, 0));
    Out o = run_to_out(g.vcpu);
    VcpuState raw = g.vcpu.save_state();
    VmState raw_vm = g.vm.save_state();
    GuestMemory mem = GuestMemory::create(kMemSize);
    std::memcpy(mem.regions()[0].host, g.mem.regions()[0].host, kMemSize);
    Guest c = make_guest(kvm, std::move(mem));
    c.vm.restore_state(raw_vm);
    c.vcpu.restore_state(raw);
    Out again = run_to_out(c.vcpu);
    std::printf(
        "info: without complete_pending_io the clone's first OUT is port 0x%x = %u "
        "(original's last: port 0x%x = %u)%s\n",
        again.port, again.value, o.port, o.value, again.port == o.port ? ": repeated" : "");
  }

  // A truncated image is refused before any ioctl, naming the field.
  {
    Guest g = make_guest(kvm, GuestMemory::create(kMemSize));
    VcpuState bad = vcpu_state;
    bad.lapic.resize(100);
    std::string msg;
    try {
      g.vcpu.restore_state(bad);
    } catch (const Error& e) {
      msg = e.what();
    }
    check(msg.find("lapic") != std::string::npos, "truncated lapic refused: " + msg);
  }
  std::printf("%s\n", failures == 0 ? "PASS" : "FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace wisp

int main() {
  try {
    return wisp::run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvm_state_roundtrip: %s\n", e.what());
    return 1;
  }
}
