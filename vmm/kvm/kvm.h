// RAII wrappers for the three KVM file descriptors: the system (/dev/kvm), a VM and a vCPU
// (with its kvm_run mapping). These are the only types that issue KVM ioctls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "vmm/kvm/cpu_types.h"
#include "vmm/kvm/vcpu_exit.h"
#include "vmm/kvm/vcpu_state.h"

namespace wisp {

// What provides /dev/kvm on this host. Only hardware-assisted KVM can boot stock Linux guests.
enum class KvmFlavor { kNone, kIntel, kAmd, kPvm, kUnknown };
KvmFlavor detect_kvm_flavor(const std::string& sysfs_module_dir = "/sys/module",
                            const std::string& dev_kvm = "/dev/kvm");
const char* kvm_flavor_name(KvmFlavor f);

class Vm;

// What saving and restoring vCPU state needs to know about this host's KVM; found once by
// Kvm::open and shared (read-only) with every Vm and Vcpu made from it.
struct KvmStateSupport {
  size_t xsave_size = KvmImageSize::kXsaveMin;  // bytes KVM_GET_XSAVE2 / KVM_SET_XSAVE move
  bool has_xsave2 = false;
  bool has_xcrs = false;
  bool has_tsc_control = false;       // KVM_SET_TSC_KHZ works
  std::vector<uint32_t> msr_indices;  // KVM_GET_MSR_INDEX_LIST ∩ should_save_msr, ascending
  std::string msr_list_error;         // why msr_indices is unknown; save_state then throws
};

class Kvm {
 public:
  // Opens /dev/kvm and checks the API version and the capabilities wisp relies on.
  static Kvm open(const std::string& path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }
  int max_vcpus() const { return max_vcpus_; }
  // KVM_GET_SUPPORTED_CPUID, read once by open(): every vCPU's CPUID starts from it.
  const CpuidEntries& supported_cpuid() const { return supported_cpuid_; }
  bool has_extension(long cap) const;
  // KVM_PRE_FAULT_MEMORY (Linux 6.10 and later, with EPT/NPT): Vcpu::pre_fault works.
  bool has_pre_fault_memory() const;
  bool has_tsc_deadline_timer() const;

  Vm create_vm() const;
  const KvmStateSupport& state_support() const { return *state_support_; }

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  static std::shared_ptr<const KvmStateSupport> query_state_support(int kvm_fd);
  static CpuidEntries query_supported_cpuid(int kvm_fd);
  UniqueFd fd_;
  std::shared_ptr<const KvmStateSupport> state_support_;
  int vcpu_mmap_size_ = 0;
  int max_vcpus_ = 0;
  CpuidEntries supported_cpuid_;
};

class Vcpu;

class Vm {
 public:
  int fd() const { return fd_.get(); }

  // x86 prerequisites for an in-kernel irqchip: TSS and identity-map pages below 4 GiB.
  void set_tss_address(uint64_t addr);
  void set_identity_map_address(uint64_t addr);
  void create_irqchip();  // PIC (master/slave) + IOAPIC + per-vCPU LAPIC, in the kernel
  void create_pit();      // i8254 PIT in the kernel (speaker port dummy)
  bool has_irqchip() const { return has_irqchip_; }  // create_irqchip succeeded
  void set_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size, void* host);
  // Routes writes to `eventfd` into an edge on `gsi` (irqfd).
  void register_irqfd(int eventfd, uint32_t gsi);
  // Makes a guest MMIO write of `len` bytes (1, 2, 4 or 8) at `addr` signal `eventfd` inside
  // KVM instead of exiting to userspace (ioeventfd). With `datamatch`, only writes of that
  // value do; others still exit as ordinary MMIO writes.
  void register_ioeventfd(int eventfd, uint64_t addr, uint32_t len,
                          std::optional<uint64_t> datamatch);
  void set_irq_line(uint32_t irq, bool level);
  // `mmap_size` comes from Kvm::vcpu_mmap_size().
  Vcpu create_vcpu(uint32_t id, int mmap_size) const;
  // vCPU 0 made ahead of its machine (a standby VMM, while it waits for its order; after
  // create_irqchip, which KVM refuses once a vCPU exists), and handed over once (null: none).
  void create_vcpu0_ahead(int mmap_size);
  std::unique_ptr<Vcpu> take_vcpu0_ahead() { return std::move(vcpu0_ahead_); }

  // In-kernel irqchip (PIC master/slave, IOAPIC), PIT and KVM clock. The VM must have them
  // (create_irqchip, create_pit) and every vCPU must be out of KVM_RUN.
  VmState save_state() const;
  // Validates `s` first (untrusted). Before any vCPU runs; Firecracker restores the VM before
  // the vCPUs.
  void restore_state(const VmState& s);
  // The guest's kvmclock, in ns (KVM_GET_CLOCK), and setting it (KVM_SET_CLOCK, flags 0: the
  // guest's clock goes on from `ns`). Every vCPU must be out of KVM_RUN.
  uint64_t clock_ns() const;
  void set_clock_ns(uint64_t ns);

 private:
  friend class Kvm;
  Vm(UniqueFd fd, std::shared_ptr<const KvmStateSupport> support)
      : fd_(std::move(fd)), support_(std::move(support)) {}
  UniqueFd fd_;
  std::shared_ptr<const KvmStateSupport> support_;
  bool has_irqchip_ = false;
  std::unique_ptr<Vcpu> vcpu0_ahead_;
};

class Vcpu {
 public:
  Vcpu(Vcpu&&) noexcept;
  Vcpu& operator=(Vcpu&&) = delete;
  Vcpu(const Vcpu&) = delete;
  ~Vcpu();

  uint32_t id() const { return id_; }

  void set_cpuid(const CpuidEntries& entries);
  void set_msrs(const std::vector<MsrEntry>& msrs);
  void set_long_mode_entry(const LongModeEntry& entry);
  void init_fpu();
  // LAPIC LINT0 = ExtINT (legacy PIC through the LAPIC), LINT1 = NMI, as a BIOS leaves them.
  void init_lapic_lints();
  // Maps guest-physical [gpa, gpa + size) in the VM's EPT/NPT now, as a read by this vCPU
  // would (KVM_PRE_FAULT_MEMORY; only where Kvm::has_pre_fault_memory()), so the guest's
  // first touch of those pages takes no exit. Before the vCPU first runs. Throws Error (the
  // range is not guest memory, or KVM failed).
  void pre_fault(uint64_t gpa, uint64_t size) const;

  // Runs until the next exit and decodes it. Never throws for guest-caused exits.
  VcpuExit run();
  // Makes the current or next run() return kInterrupted. Safe from any thread when followed by
  // a signal to the vCPU thread (see Machine).
  void set_immediate_exit(bool on);

  // Snapshotting. The vCPU must be out of KVM_RUN (paused, on the calling thread or stopped
  // by the caller), and every vCPU of the VM must be, since KVM_{GET,SET}_VCPU_EVENTS race
  // with running siblings. After an I/O or MMIO exit, call complete_pending_io() before
  // save_state(): KVM finishes that instruction only on the next KVM_RUN, and the unfinished
  // part is not in any state userspace can read (a restored guest would redo the OUT).
  void complete_pending_io();
  // Tells the guest's kvmclock it was paused (avoids soft-lockup warnings). Optional; returns
  // false if the guest has no kvmclock or KVM lacks KVM_CAP_KVMCLOCK_CTRL.
  bool kvmclock_ctrl();
  // KVM's statistics file of this vCPU (vcpu_stats.h); an empty UniqueFd where KVM has none
  // (before Linux 5.14). An ioctl: call it before the VMM's seccomp filter goes on.
  UniqueFd open_stats() const;
  VcpuState save_state() const;
  // Validates `s` first (untrusted). CPUID must already be set (set_cpuid), and the VM's
  // irqchip created. Order follows Firecracker (see kvm_state.cc).
  void restore_state(const VcpuState& s);

 private:
  friend class Vm;
  Vcpu(uint32_t id, UniqueFd fd, void* run, int run_size,
       std::shared_ptr<const KvmStateSupport> support)
      : id_(id), fd_(std::move(fd)), run_(run), run_size_(run_size), support_(std::move(support)) {}
  std::vector<MsrEntry> get_msrs(const std::vector<uint32_t>& indices) const;
  void fix_tsc_after_restore(const VcpuState& s);
  uint32_t id_;
  UniqueFd fd_;
  void* run_;  // struct kvm_run mapping
  int run_size_;
  std::shared_ptr<const KvmStateSupport> support_;
};

}  // namespace wisp
