// Saving and restoring the KVM-held state of vCPUs and of a VM (see vcpu_state.h).
#include <errno.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/error.h"
#include "base/log.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_abi.h"

namespace wisp {
namespace {

static_assert(sizeof(kvm_regs) == KvmImageSize::kRegs);
static_assert(sizeof(kvm_sregs) == KvmImageSize::kSregs);
static_assert(sizeof(kvm_fpu) == KvmImageSize::kFpu);
static_assert(sizeof(kvm_xcrs) == KvmImageSize::kXcrs);
static_assert(sizeof(kvm_lapic_state) == KvmImageSize::kLapic);
static_assert(sizeof(kvm_vcpu_events) == KvmImageSize::kVcpuEvents);
static_assert(sizeof(kvm_debugregs) == KvmImageSize::kDebugRegs);
static_assert(sizeof(kvm_irqchip::chip) == KvmImageSize::kIrqchip);
static_assert(sizeof(kvm_pit_state2) == KvmImageSize::kPit);
static_assert(KVM_MP_STATE_SIPI_RECEIVED == kMaxX86MpState);

// TSC frequencies within 250 ppm are the same clock calibrated twice (Firecracker's tolerance).
constexpr double kTscKhzTolerance = 250e-6;

// Reads a fixed-size KVM structure into a byte image.
template <typename T>
std::vector<uint8_t> get_image(int fd, unsigned long request, const char* name) {
  std::vector<uint8_t> image(sizeof(T));
  if (ioctl(fd, request, image.data()) < 0) throw_errno(name);
  return image;
}

// Writes a validated byte image back. The copy gives the kernel an aligned T.
template <typename T>
void set_image(int fd, unsigned long request, const std::vector<uint8_t>& image, const char* name) {
  T value;
  std::memcpy(&value, image.data(), sizeof(T));
  if (ioctl(fd, request, &value) < 0) throw_errno(name);
}

std::vector<uint32_t> msr_index_list(int kvm_fd) {
  MsrListHeader probe{0};
  if (ioctl(kvm_fd, kGetMsrIndexList, &probe) < 0 && errno != E2BIG)
    throw_errno("KVM_GET_MSR_INDEX_LIST");
  FlexBuffer<MsrListHeader, uint32_t> buf(probe.nmsrs);
  buf.header()->nmsrs = probe.nmsrs;
  if (ioctl(kvm_fd, kGetMsrIndexList, buf.data()) < 0) throw_errno("KVM_GET_MSR_INDEX_LIST");
  uint32_t n = std::min(buf.header()->nmsrs, probe.nmsrs);
  return {buf.entries(), buf.entries() + n};
}

constexpr uint32_t kMsrTsc = 0x10;

}  // namespace

std::shared_ptr<const KvmStateSupport> Kvm::query_state_support(int kvm_fd) {
  auto s = std::make_shared<KvmStateSupport>();
  int xsave2 = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
  if (xsave2 >= static_cast<int>(KvmImageSize::kXsaveMin)) {
    s->has_xsave2 = true;
    s->xsave_size = static_cast<size_t>(xsave2);
  }
  s->has_xcrs = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
  s->has_tsc_control = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0;
  try {
    for (uint32_t index : msr_index_list(kvm_fd))
      if (should_save_msr(index)) s->msr_indices.push_back(index);
  } catch (const Error& e) {
    s->msr_list_error = e.what();  // not fatal for booting; snapshots need it
  }
  std::sort(s->msr_indices.begin(), s->msr_indices.end());
  s->msr_indices.erase(std::unique(s->msr_indices.begin(), s->msr_indices.end()),
                       s->msr_indices.end());
  return s;
}

// ---- vCPU ----

void Vcpu::complete_pending_io() {
  auto* run = static_cast<kvm_run*>(run_);
  run->immediate_exit = 1;
  int r = ioctl(fd_.get(), KVM_RUN, 0);
  int saved_errno = errno;
  run->immediate_exit = 0;
  if (r < 0 && saved_errno != EINTR && saved_errno != EAGAIN) {
    errno = saved_errno;
    throw_errno("KVM_RUN (completing pending I/O) on vCPU " + std::to_string(id_));
  }
}

bool Vcpu::kvmclock_ctrl() { return ioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0) == 0; }

// KVM_GET_MSRS stops at the first MSR it cannot read; such an MSR is dropped (KVM listed it
// but this vCPU's CPUID does not enable it) and the rest read again.
std::vector<MsrEntry> Vcpu::get_msrs(const std::vector<uint32_t>& wanted) const {
  std::vector<uint32_t> indices = wanted;
  while (!indices.empty()) {
    FlexBuffer<MsrsHeader, kvm_msr_entry> buf(indices.size());
    buf.header()->nmsrs = static_cast<uint32_t>(indices.size());
    for (size_t i = 0; i < indices.size(); ++i) buf.entries()[i].index = indices[i];
    int n = ioctl(fd_.get(), kGetMsrs, buf.data());
    if (n < 0) throw_errno("KVM_GET_MSRS");
    if (static_cast<size_t>(n) == indices.size()) {
      std::vector<MsrEntry> out;
      for (size_t i = 0; i < indices.size(); ++i)
        out.push_back({buf.entries()[i].index, buf.entries()[i].data});
      return out;
    }
    indices.erase(indices.begin() + n);
  }
  return {};
}

// Order (Firecracker's, from QEMU's): KVM_GET_MP_STATE first, since it runs
// kvm_apic_accept_events() and may change vCPU/LAPIC state; KVM_GET_LAPIC may also update the
// LAPIC before returning it; KVM_GET_VCPU_EVENTS last, as the other GETs can touch pending
// events.
VcpuState Vcpu::save_state() const {
  if (!support_->msr_list_error.empty())
    throw Error("cannot save vCPU state: " + support_->msr_list_error);
  const int fd = fd_.get();
  VcpuState s;
  s.id = id_;
  kvm_mp_state mp{};
  if (ioctl(fd, KVM_GET_MP_STATE, &mp) < 0) throw_errno("KVM_GET_MP_STATE");
  s.mp_state = mp.mp_state;
  s.regs = get_image<kvm_regs>(fd, KVM_GET_REGS, "KVM_GET_REGS");
  s.sregs = get_image<kvm_sregs>(fd, KVM_GET_SREGS, "KVM_GET_SREGS");
  s.fpu = get_image<kvm_fpu>(fd, KVM_GET_FPU, "KVM_GET_FPU");
  s.xsave.assign(support_->xsave_size, 0);
  if (ioctl(fd, support_->has_xsave2 ? kGetXsave2 : kGetXsave, s.xsave.data()) < 0)
    throw_errno(support_->has_xsave2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE");
  if (support_->has_xcrs)
    s.xcrs = get_image<kvm_xcrs>(fd, KVM_GET_XCRS, "KVM_GET_XCRS");
  else
    s.xcrs.assign(KvmImageSize::kXcrs, 0);  // nr_xcrs = 0: restoring it sets nothing
  s.debug_regs = get_image<kvm_debugregs>(fd, KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
  s.lapic = get_image<kvm_lapic_state>(fd, KVM_GET_LAPIC, "KVM_GET_LAPIC");
  int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
  s.tsc_khz = khz > 0 ? static_cast<uint32_t>(khz) : 0;
  s.msrs = get_msrs(support_->msr_indices);
  s.vcpu_events = get_image<kvm_vcpu_events>(fd, KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
  return s;
}

// Order (Firecracker's restore_state, with its reasons):
// - TSC frequency first: MSR writes of the TSC are scaled by it.
// - SET_REGS clears pending exceptions, so it precedes SET_VCPU_EVENTS, which restores them.
// - SET_LAPIC after SET_SREGS, which restores the APIC base.
// - SET_LAPIC before SET_MSRS: TSC_DEADLINE only restores with the LAPIC configured; within
//   the MSRs, TSC (0x10) precedes TSC_DEADLINE (0x6e0) because they are sorted.
// - SET_FPU before SET_XSAVE, which holds the same registers and wins.
void Vcpu::restore_state(const VcpuState& s) {
  s.validate();
  s.check_xsave_fits(support_->xsave_size);
  const int fd = fd_.get();
  if (s.tsc_khz != 0) {
    int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
    double diff = std::abs(static_cast<double>(khz) - static_cast<double>(s.tsc_khz));
    if (khz <= 0 || diff > static_cast<double>(s.tsc_khz) * kTscKhzTolerance) {
      if (!support_->has_tsc_control)
        throw Error("vCPU state: TSC runs at " + std::to_string(s.tsc_khz) + " kHz, this host at " +
                    std::to_string(khz) + " kHz, and KVM cannot scale it (no KVM_CAP_TSC_CONTROL)");
      if (ioctl(fd, KVM_SET_TSC_KHZ, static_cast<unsigned long>(s.tsc_khz)) < 0)
        throw_errno("KVM_SET_TSC_KHZ " + std::to_string(s.tsc_khz));
    }
  }
  kvm_mp_state mp{};
  mp.mp_state = s.mp_state;
  if (ioctl(fd, KVM_SET_MP_STATE, &mp) < 0) throw_errno("KVM_SET_MP_STATE");
  set_image<kvm_regs>(fd, KVM_SET_REGS, s.regs, "KVM_SET_REGS");
  set_image<kvm_sregs>(fd, KVM_SET_SREGS, s.sregs, "KVM_SET_SREGS");
  set_image<kvm_fpu>(fd, KVM_SET_FPU, s.fpu, "KVM_SET_FPU");
  // KVM reads xsave_size bytes; a smaller image (from a host without XSAVE2 extras) is padded.
  std::vector<uint32_t> xsave((support_->xsave_size + 3) / 4, 0);
  std::memcpy(xsave.data(), s.xsave.data(), s.xsave.size());
  if (ioctl(fd, kSetXsave, xsave.data()) < 0) throw_errno("KVM_SET_XSAVE");
  if (support_->has_xcrs) set_image<kvm_xcrs>(fd, KVM_SET_XCRS, s.xcrs, "KVM_SET_XCRS");
  set_image<kvm_debugregs>(fd, KVM_SET_DEBUGREGS, s.debug_regs, "KVM_SET_DEBUGREGS");
  set_image<kvm_lapic_state>(fd, KVM_SET_LAPIC, s.lapic, "KVM_SET_LAPIC");
  if (!s.msrs.empty()) set_msrs(s.msrs);
  fix_tsc_after_restore(s);
  set_image<kvm_vcpu_events>(fd, KVM_SET_VCPU_EVENTS, s.vcpu_events, "KVM_SET_VCPU_EVENTS");
}

// A host-initiated write of IA32_TSC that lands within one second of what KVM expects for the
// VM (e.g. a snapshot of a guest younger than a second, restored into a VM created just now)
// is taken by KVM's TSC synchronisation heuristic as "match the other vCPUs" and ignored: the
// guest TSC would restart near zero. Kernels before 6.6 do this. When KVM_VCPU_TSC_OFFSET is
// available, the offset is corrected so the guest TSC continues from the saved value.
void Vcpu::fix_tsc_after_restore(const VcpuState& s) {
  auto saved = std::find_if(s.msrs.begin(), s.msrs.end(),
                            [](const MsrEntry& m) { return m.index == kMsrTsc; });
  if (saved == s.msrs.end()) return;
  std::vector<MsrEntry> now = get_msrs({kMsrTsc});
  if (now.empty()) return;
  int64_t behind = static_cast<int64_t>(saved->value - now[0].value);
  int64_t tolerance = s.tsc_khz != 0 ? int64_t{s.tsc_khz} : 1000000;  // 1 ms of cycles
  if (behind <= tolerance && behind >= -tolerance) return;
  kvm_device_attr attr{};
  attr.group = KVM_VCPU_TSC_CTRL;
  attr.attr = KVM_VCPU_TSC_OFFSET;
  uint64_t offset = 0;
  attr.addr = reinterpret_cast<uint64_t>(&offset);
  if (ioctl(fd_.get(), KVM_HAS_DEVICE_ATTR, &attr) < 0 ||
      ioctl(fd_.get(), KVM_GET_DEVICE_ATTR, &attr) < 0) {
    LOG_WARN(
        "vCPU %u: guest TSC is %lld cycles off after restore and KVM cannot set the TSC "
        "offset (no KVM_VCPU_TSC_OFFSET)",
        id_, static_cast<long long>(behind));
    return;
  }
  offset += static_cast<uint64_t>(behind);
  if (ioctl(fd_.get(), KVM_SET_DEVICE_ATTR, &attr) < 0)
    throw_errno("KVM_SET_DEVICE_ATTR TSC offset");
}

// ---- VM ----

namespace {

std::vector<uint8_t> get_irqchip(int fd, uint32_t chip_id, const char* name) {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  if (ioctl(fd, KVM_GET_IRQCHIP, &chip) < 0) throw_errno(std::string("KVM_GET_IRQCHIP ") + name);
  const auto* p = reinterpret_cast<const uint8_t*>(&chip.chip);
  return {p, p + sizeof(chip.chip)};
}

void set_irqchip(int fd, uint32_t chip_id, const std::vector<uint8_t>& image, const char* name) {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  std::memcpy(&chip.chip, image.data(), sizeof(chip.chip));
  if (ioctl(fd, KVM_SET_IRQCHIP, &chip) < 0) throw_errno(std::string("KVM_SET_IRQCHIP ") + name);
}

}  // namespace

VmState Vm::save_state() const {
  const int fd = fd_.get();
  VmState s;
  s.pic_master = get_irqchip(fd, KVM_IRQCHIP_PIC_MASTER, "PIC master");
  s.pic_slave = get_irqchip(fd, KVM_IRQCHIP_PIC_SLAVE, "PIC slave");
  s.ioapic = get_irqchip(fd, KVM_IRQCHIP_IOAPIC, "IOAPIC");
  s.pit = get_image<kvm_pit_state2>(fd, KVM_GET_PIT2, "KVM_GET_PIT2");
  kvm_clock_data clock{};
  if (ioctl(fd, KVM_GET_CLOCK, &clock) < 0) throw_errno("KVM_GET_CLOCK");
  s.clock_ns = clock.clock;
  s.clock_flags = clock.flags;
  return s;
}

uint64_t Vm::clock_ns() const {
  kvm_clock_data clock{};
  if (ioctl(fd_.get(), KVM_GET_CLOCK, &clock) < 0) throw_errno("KVM_GET_CLOCK");
  return clock.clock;
}

void Vm::set_clock_ns(uint64_t ns) {
  kvm_clock_data clock{};
  clock.clock = ns;
  if (ioctl(fd_.get(), KVM_SET_CLOCK, &clock) < 0) throw_errno("KVM_SET_CLOCK");
}

void Vm::restore_state(const VmState& s) {
  s.validate();
  const int fd = fd_.get();
  set_irqchip(fd, KVM_IRQCHIP_PIC_MASTER, s.pic_master, "PIC master");
  set_irqchip(fd, KVM_IRQCHIP_PIC_SLAVE, s.pic_slave, "PIC slave");
  set_irqchip(fd, KVM_IRQCHIP_IOAPIC, s.ioapic, "IOAPIC");
  set_image<kvm_pit_state2>(fd, KVM_SET_PIT2, s.pit, "KVM_SET_PIT2");
  // The guest's kvmclock continues from the saved value rather than jumping by the wall time
  // spent in the snapshot (the agent fixes the wall clock after restore).
  set_clock_ns(s.clock_ns);
}

}  // namespace wisp
