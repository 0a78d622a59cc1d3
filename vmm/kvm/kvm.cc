#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "base/error.h"
#include "vmm/kvm/kvm_abi.h"

namespace wisp {
namespace {

static_assert(VcpuExit::kEventShutdown == KVM_SYSTEM_EVENT_SHUTDOWN);
static_assert(VcpuExit::kEventReset == KVM_SYSTEM_EVENT_RESET);
static_assert(VcpuExit::kEventCrash == KVM_SYSTEM_EVENT_CRASH);

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

kvm_segment to_kvm(const Segment& s) {
  kvm_segment k{};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.type;
  k.present = s.present;
  k.dpl = s.dpl;
  k.db = s.db;
  k.s = s.s;
  k.l = s.l;
  k.g = s.g;
  k.avl = s.avl;
  k.unusable = s.present ? 0 : 1;
  return k;
}

}  // namespace

KvmFlavor detect_kvm_flavor(const std::string& sysfs, const std::string& dev_kvm) {
  if (!exists(dev_kvm)) return KvmFlavor::kNone;
  if (exists(sysfs + "/kvm_pvm")) return KvmFlavor::kPvm;
  if (exists(sysfs + "/kvm_intel")) return KvmFlavor::kIntel;
  if (exists(sysfs + "/kvm_amd")) return KvmFlavor::kAmd;
  return KvmFlavor::kUnknown;
}

const char* kvm_flavor_name(KvmFlavor f) {
  switch (f) {
    case KvmFlavor::kNone:
      return "none";
    case KvmFlavor::kIntel:
      return "kvm_intel";
    case KvmFlavor::kAmd:
      return "kvm_amd";
    case KvmFlavor::kPvm:
      return "kvm_pvm";
    case KvmFlavor::kUnknown:
      return "unknown";
  }
  return "?";
}

Kvm Kvm::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) throw_errno("opening " + path);
  Kvm kvm(std::move(fd));
  int version = ioctl(kvm.fd(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    throw Error(path + ": KVM API version " + std::to_string(version) + ", wisp needs " +
                std::to_string(KVM_API_VERSION));
  struct Needed {
    long cap;
    const char* name;
  };
  static constexpr Needed kNeeded[] = {
      {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
      {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
      {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
      {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
      {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
      {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
      {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
      {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
  };
  for (const auto& n : kNeeded)
    if (!kvm.has_extension(n.cap)) throw Error(path + ": KVM lacks " + n.name);
  kvm.vcpu_mmap_size_ = ioctl(kvm.fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (kvm.vcpu_mmap_size_ < static_cast<int>(sizeof(kvm_run)))
    throw_errno("KVM_GET_VCPU_MMAP_SIZE");
  int max = ioctl(kvm.fd(), KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
  if (max <= 0) max = ioctl(kvm.fd(), KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
  kvm.max_vcpus_ = max > 0 ? max : 1;
  kvm.state_support_ = query_state_support(kvm.fd());
  kvm.supported_cpuid_ = query_supported_cpuid(kvm.fd());
  return kvm;
}

bool Kvm::has_extension(long cap) const { return ioctl(fd(), KVM_CHECK_EXTENSION, cap) > 0; }

bool Kvm::has_pre_fault_memory() const { return has_extension(kCapPreFaultMemory); }

bool Kvm::has_tsc_deadline_timer() const { return has_extension(KVM_CAP_TSC_DEADLINE_TIMER); }

CpuidEntries Kvm::query_supported_cpuid(int kvm_fd) {
  for (uint32_t n = 128; n <= 4096; n *= 2) {
    FlexBuffer<CpuidHeader, kvm_cpuid_entry2> buf(n);
    buf.header()->nent = n;
    if (ioctl(kvm_fd, kGetSupportedCpuid, buf.data()) == 0) {
      CpuidEntries out;
      for (uint32_t i = 0; i < buf.header()->nent && i < n; ++i) {
        const auto& e = buf.entries()[i];
        out.push_back({e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});
      }
      return out;
    }
    if (errno != E2BIG) throw_errno("KVM_GET_SUPPORTED_CPUID");
  }
  throw Error("KVM_GET_SUPPORTED_CPUID: too many entries");
}

Vm Kvm::create_vm() const {
  int fd;
  do {
    fd = ioctl(this->fd(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("KVM_CREATE_VM");
  return Vm(UniqueFd(fd), state_support_);
}

void Vm::set_tss_address(uint64_t addr) {
  if (ioctl(fd(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0)
    throw_errno("KVM_SET_TSS_ADDR");
}

void Vm::set_identity_map_address(uint64_t addr) {
  uint64_t a = addr;
  if (ioctl(fd(), KVM_SET_IDENTITY_MAP_ADDR, &a) < 0) throw_errno("KVM_SET_IDENTITY_MAP_ADDR");
}

void Vm::create_irqchip() {
  if (ioctl(fd(), KVM_CREATE_IRQCHIP, 0) < 0) throw_errno("KVM_CREATE_IRQCHIP");
  has_irqchip_ = true;
}

void Vm::create_pit() {
  kvm_pit_config cfg{};
  cfg.flags = KVM_PIT_SPEAKER_DUMMY;
  if (ioctl(fd(), KVM_CREATE_PIT2, &cfg) < 0) throw_errno("KVM_CREATE_PIT2");
}

void Vm::set_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size, void* host) {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.guest_phys_addr = guest_addr;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (ioctl(fd(), KVM_SET_USER_MEMORY_REGION, &r) < 0) throw_errno("KVM_SET_USER_MEMORY_REGION");
}

void Vm::register_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd f{};
  f.fd = static_cast<uint32_t>(eventfd);
  f.gsi = gsi;
  if (ioctl(fd(), KVM_IRQFD, &f) < 0) throw_errno("KVM_IRQFD for GSI " + std::to_string(gsi));
}

void Vm::register_ioeventfd(int eventfd, uint64_t addr, uint32_t len,
                            std::optional<uint64_t> datamatch) {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  if (datamatch) {
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    io.datamatch = *datamatch;
  }
  if (ioctl(fd(), KVM_IOEVENTFD, &io) < 0) {
    char where[64];
    snprintf(where, sizeof(where), "KVM_IOEVENTFD at 0x%llx",
             static_cast<unsigned long long>(addr));
    throw_errno(where);
  }
}

void Vm::set_irq_line(uint32_t irq, bool level) {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  if (ioctl(fd(), KVM_IRQ_LINE, &l) < 0) throw_errno("KVM_IRQ_LINE");
}

Vcpu Vm::create_vcpu(uint32_t id, int mmap_size) const {
  int fd = ioctl(this->fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) throw_errno("KVM_CREATE_VCPU " + std::to_string(id));
  UniqueFd owned(fd);
  void* run =
      mmap(nullptr, static_cast<size_t>(mmap_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) throw_errno("mapping kvm_run of vCPU " + std::to_string(id));
  return Vcpu(id, std::move(owned), run, mmap_size, support_);
}

void Vm::create_vcpu0_ahead(int mmap_size) {
  vcpu0_ahead_ = std::make_unique<Vcpu>(create_vcpu(0, mmap_size));
}

Vcpu::Vcpu(Vcpu&& o) noexcept
    : id_(o.id_),
      fd_(std::move(o.fd_)),
      run_(std::exchange(o.run_, nullptr)),
      run_size_(o.run_size_),
      support_(std::move(o.support_)) {}

Vcpu::~Vcpu() {
  if (run_) munmap(run_, static_cast<size_t>(run_size_));
}

void Vcpu::set_cpuid(const CpuidEntries& entries) {
  FlexBuffer<CpuidHeader, kvm_cpuid_entry2> buf(entries.size());
  buf.header()->nent = static_cast<uint32_t>(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    buf.entries()[i] = {e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx, {}};
  }
  if (ioctl(fd_.get(), kSetCpuid2, buf.data()) < 0) throw_errno("KVM_SET_CPUID2");
}

void Vcpu::set_msrs(const std::vector<MsrEntry>& msrs) {
  FlexBuffer<MsrsHeader, kvm_msr_entry> buf(msrs.size());
  buf.header()->nmsrs = static_cast<uint32_t>(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    buf.entries()[i].index = msrs[i].index;
    buf.entries()[i].data = msrs[i].value;
  }
  int n = ioctl(fd_.get(), kSetMsrs, buf.data());
  if (n < 0) throw_errno("KVM_SET_MSRS");
  if (static_cast<size_t>(n) != msrs.size()) {
    char hex[16];
    snprintf(hex, sizeof(hex), "0x%x", msrs[static_cast<size_t>(n)].index);
    throw Error(std::string("KVM_SET_MSRS: KVM refused MSR ") + hex);
  }
}

void Vcpu::set_long_mode_entry(const LongModeEntry& e) {
  kvm_sregs sregs{};
  if (ioctl(fd_.get(), KVM_GET_SREGS, &sregs) < 0) throw_errno("KVM_GET_SREGS");
  sregs.cs = to_kvm(e.code);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = to_kvm(e.data);
  sregs.tr = to_kvm(e.tss);
  sregs.gdt.base = e.gdt_base;
  sregs.gdt.limit = e.gdt_limit;
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  sregs.cr0 = e.cr0;
  sregs.cr3 = e.cr3;
  sregs.cr4 = e.cr4;
  sregs.efer = e.efer;
  if (ioctl(fd_.get(), KVM_SET_SREGS, &sregs) < 0) throw_errno("KVM_SET_SREGS");

  kvm_regs regs{};
  regs.rflags = 0x2;  // bit 1 is reserved-one; interrupts off until the kernel enables them
  regs.rip = e.rip;
  regs.rsp = e.rsp;
  regs.rbp = e.rsp;
  regs.rsi = e.rsi;
  if (ioctl(fd_.get(), KVM_SET_REGS, &regs) < 0) throw_errno("KVM_SET_REGS");
}

void Vcpu::init_fpu() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;     // x87 default control word (FNINIT state)
  fpu.mxcsr = 0x1f80;  // SSE default: all exceptions masked
  if (ioctl(fd_.get(), KVM_SET_FPU, &fpu) < 0) throw_errno("KVM_SET_FPU");
}

void Vcpu::pre_fault(uint64_t gpa, uint64_t size) const {
  PreFaultMemory range{};
  range.gpa = gpa;
  range.size = size;
  // KVM maps what it can and moves gpa/size past it: a pending signal or a reschedule ends a
  // call early (0 after progress, EINTR/EAGAIN before any); the loop goes on from there.
  while (range.size > 0) {
    if (ioctl(fd_.get(), kPreFaultMemory, &range) == 0 || errno == EINTR || errno == EAGAIN)
      continue;
    char at[64];
    std::snprintf(at, sizeof(at), " at guest address 0x%llx",
                  static_cast<unsigned long long>(range.gpa));
    throw_errno("KVM_PRE_FAULT_MEMORY on vCPU " + std::to_string(id_) + at);
  }
}

void Vcpu::init_lapic_lints() {
  kvm_lapic_state lapic{};
  if (ioctl(fd_.get(), KVM_GET_LAPIC, &lapic) < 0) throw_errno("KVM_GET_LAPIC");
  constexpr int kLvtLint0 = 0x350, kLvtLint1 = 0x360;
  constexpr uint32_t kDeliveryModeMask = 0x700, kExtInt = 0x700, kNmi = 0x400;
  auto patch = [&](int off, uint32_t mode) {
    uint32_t v;
    std::memcpy(&v, lapic.regs + off, 4);
    v = (v & ~kDeliveryModeMask) | mode;
    std::memcpy(lapic.regs + off, &v, 4);
  };
  patch(kLvtLint0, kExtInt);
  patch(kLvtLint1, kNmi);
  if (ioctl(fd_.get(), KVM_SET_LAPIC, &lapic) < 0) throw_errno("KVM_SET_LAPIC");
}

void Vcpu::set_immediate_exit(bool on) { static_cast<kvm_run*>(run_)->immediate_exit = on ? 1 : 0; }

VcpuExit Vcpu::run() {
  VcpuExit out;
  auto* run = static_cast<kvm_run*>(run_);
  if (ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    if (errno == EINTR || errno == EAGAIN) {
      out.kind = VcpuExit::Kind::kInterrupted;
      return out;
    }
    throw_errno("KVM_RUN on vCPU " + std::to_string(id_));
  }
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      out.kind = VcpuExit::Kind::kIo;
      out.is_write = run->io.direction == KVM_EXIT_IO_OUT;
      out.addr = run->io.port;
      out.size = run->io.size;
      out.count = run->io.count;
      uint64_t bytes = static_cast<uint64_t>(run->io.size) * run->io.count;
      // KVM guarantees the data lies inside the mapping; check anyway, it is cheap.
      if (run->io.data_offset + bytes > static_cast<uint64_t>(run_size_)) {
        out.kind = VcpuExit::Kind::kInternalError;
        return out;
      }
      out.data = {reinterpret_cast<uint8_t*>(run) + run->io.data_offset, bytes};
      break;
    }
    case KVM_EXIT_MMIO:
      out.kind = VcpuExit::Kind::kMmio;
      out.is_write = run->mmio.is_write;
      out.addr = run->mmio.phys_addr;
      out.size = run->mmio.len > 8 ? 8 : run->mmio.len;
      out.data = {run->mmio.data, out.size};
      break;
    case KVM_EXIT_HLT:
      out.kind = VcpuExit::Kind::kHlt;
      break;
    case KVM_EXIT_SHUTDOWN:
      out.kind = VcpuExit::Kind::kShutdown;
      break;
    case KVM_EXIT_SYSTEM_EVENT:
      out.kind = VcpuExit::Kind::kSystemEvent;
      out.code = run->system_event.type;
      break;
    case KVM_EXIT_INTERNAL_ERROR:
      out.kind = VcpuExit::Kind::kInternalError;
      out.code = run->internal.suberror;
      break;
    case KVM_EXIT_FAIL_ENTRY:
      out.kind = VcpuExit::Kind::kFailEntry;
      out.code = run->fail_entry.hardware_entry_failure_reason;
      break;
    case KVM_EXIT_INTR:
      out.kind = VcpuExit::Kind::kInterrupted;
      break;
    default:
      out.kind = VcpuExit::Kind::kUnknown;
      out.code = run->exit_reason;
      break;
  }
  return out;
}

UniqueFd Vcpu::open_stats() const {
  int fd = ioctl(fd_.get(), KVM_GET_STATS_FD, 0);
  return UniqueFd(fd < 0 ? -1 : fd);
}

}  // namespace wisp
