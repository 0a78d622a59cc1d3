#include "vmm/machine/machine.h"

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>

#include "base/clock.h"
#include "base/error.h"
#include "vmm/arch/cpuid.h"
#include "vmm/boot/mptable.h"
#include "vmm/machine/machine_builder.h"
#include "vmm/machine/machine_impl.h"

namespace wisp {

CpuidEntries guest_cpuid(const Kvm& kvm, uint32_t id, uint32_t vcpus, CpuModel model) {
  CpuidOptions options;
  options.tsc_deadline_timer = kvm.has_tsc_deadline_timer();
  options.model = model;
  return vcpu_cpuid(kvm.supported_cpuid(), id, vcpus, options);
}

std::string default_kernel_cmdline() {
  // console: the 8250 on COM1. reboot=k: reboot through the i8042 (an exit we see).
  // panic=-1: reboot at once on panic. pci=off, i8042.*: nothing to probe. io_delay=none and
  // tsc/no_timer_check: skip port-0x80 delays and timer checks a VM does not need.
  return "console=ttyS0 reboot=k panic=-1 pci=off nomodule 8250.nr_uarts=1 "
         "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd io_delay=none "
         "tsc=reliable no_timer_check";
}

namespace {

// SIGINT, SIGTERM and SIGHUP end the VM cleanly (terminal restored, the exit status says why).
// From a StopSignals on they are blocked in every thread (vCPU threads started meanwhile
// inherit the mask) and read from a signalfd on the loop thread. They stay blocked once it is
// gone: the VM has stopped and its process is ending, and a second stop signal (a supervisor
// forwarding what a terminal also sent, a second Ctrl-C) would otherwise run its handler (the
// jail's no-op one) on the loop thread, whose seccomp filter has no rt_sigreturn: the VMM was
// killed by seccomp at its exit.
class StopSignals {
 public:
  StopSignals(EventLoop& loop, StopRequest& stop) : loop_(loop) {
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, s);
    sigset_t old_mask;
    pthread_sigmask(SIG_BLOCK, &signals, &old_mask);
    fd_ = UniqueFd(signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd_) {
      pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
      throw_errno("signalfd");
    }
    loop_.add(fd_.get(), [fd = fd_.get(), &stop](uint32_t) {
      signalfd_siginfo info{};
      if (::read(fd, &info, sizeof(info)) == sizeof(info))
        stop.request_by_signal(static_cast<int>(info.ssi_signo));
    });
  }
  ~StopSignals() { loop_.remove(fd_.get()); }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  EventLoop& loop_;
  UniqueFd fd_;
};

uint32_t max_vcpus(const Kvm& kvm) {
  return std::min<uint32_t>(static_cast<uint32_t>(kvm.max_vcpus()), kMpTableMaxCpus);
}

}  // namespace

MachineImpl::MachineImpl(const MachineConfig& config, uint64_t t0_ns, GuestMemory memory, Vm vm)
    : config_(config),
      t0_ns_(t0_ns),
      mem_(std::move(memory)),
      vm_(std::move(vm)),
      stop_([this] {
        vcpus_.request_stop();
        loop_.stop();
      }),
      vcpus_(pio_, mmio_, [this](StopReason reason, std::string detail) {
        stop_.request(reason, std::move(detail));
      }) {}

RunResult MachineImpl::run() {
  console_->start_input(loop_, [this](std::span<const uint8_t> b) { serial_->enqueue_input(b); });
  uint64_t end_ns = 0;
  {
    StopSignals signals(loop_, stop_);
    start_threads();
    loop_.run();
    vcpus_.stop();
    end_ns = now_ns();
    console_->stop_input();
  }
  return result(end_ns);
}

// The control thread, the vCPU threads, then the loop's own confinement: each thread's hook
// runs before that thread handles anything from the guest.
void MachineImpl::start_threads() {
  const auto& hook = config_.on_thread_start;
  try {
    if (control_)
      control_->start(hook ? [&hook] { hook(ThreadRole::kControl); } : std::function<void()>());
  } catch (const Error& e) {
    stop_.request(StopReason::kError, e.what());
    return;
  }
  try {
    std::function<void()> device_hook;
    if (hook) device_hook = [&hook] { hook(ThreadRole::kBlock); };
    for (AttachedVirtioDevice& d : virtio_) d.transport->device().start_threads(device_hook);
  } catch (const Error& e) {
    stop_.request(StopReason::kError, std::string("device thread: ") + e.what());
    return;
  }
  vcpus_.start(hook ? [&hook](size_t) { hook(ThreadRole::kVcpu); } : VcpuRunner::ThreadStartFn());
  try {
    if (hook) hook(ThreadRole::kLoop);
  } catch (const Error& e) {
    stop_.request(StopReason::kError, std::string("event loop: ") + e.what());
  }
}

RunResult MachineImpl::result(uint64_t end_ns) const {
  StopRequest::Outcome outcome = stop_.outcome();
  RunResult r;
  r.reason = outcome.reason;
  r.detail = outcome.detail;
  r.panicked = outcome.panicked;
  r.signal = outcome.signal;
  uint64_t first = vcpus_.first_run_ns();
  r.first_run_us = first > t0_ns_ ? (first - t0_ns_) / 1000 : 0;
  r.kernel_loaded_us = (kernel_loaded_ns_ - t0_ns_) / 1000;
  r.exit_us = (end_ns - t0_ns_) / 1000;
  const ExitCounters& counters = vcpus_.counters();
  r.io_exits = counters.io_exits.load();
  r.mmio_exits = counters.mmio_exits.load();
  r.unhandled_io = counters.unhandled_io.load();
  r.loop_max_us = loop_.longest_iteration_ns() / 1000;
  return r;
}

void MachineImpl::add_vcpu(Vcpu vcpu) {
  if (UniqueFd fd = vcpu.open_stats()) vcpu_stats_.emplace_back(std::move(fd));
  vcpus_.add(std::move(vcpu));
}

VcpuCounts MachineImpl::vcpu_counts() const {
  VcpuCounts sum;
  for (const VcpuStats& s : vcpu_stats_) sum += s.read();
  return sum;
}

PreFaultResult MachineImpl::pre_fault(std::span<const std::pair<uint64_t, uint64_t>> guest_pages) {
  PreFaultResult out;
  uint64_t t0 = now_ns();
  const Vcpu& vcpu = vcpus_.vcpus().front();  // vCPU 0 maps for all: the EPT/NPT is the VM's
  try {
    for (const auto& [first, count] : guest_pages) {
      vcpu.pre_fault(first * 4096, count * 4096);
      out.pages += count;
    }
  } catch (const Error& e) {
    out.error = e.what();
  }
  out.ms = static_cast<double>(now_ns() - t0) / 1e6;
  return out;
}

void MachineImpl::pause(bool hold_clock) {
  vcpus_.pause();
  if (hold_clock && !held_clock_ns_) held_clock_ns_ = vm_.clock_ns();
}

void MachineImpl::resume() {
  if (!vcpus_.paused()) return;
  // Before any vCPU runs: the guest sees its clock go on from the pause.
  if (held_clock_ns_) vm_.set_clock_ns(*held_clock_ns_);
  held_clock_ns_.reset();
  vcpus_.resume();
}

MachineState MachineImpl::save_state() {
  if (!paused()) throw Error("the VM must be paused to save its state");
  // Requests in flight finish first: their used entries and interrupt belong in the state.
  for (AttachedVirtioDevice& d : virtio_) d.transport->device().quiesce();
  MachineState s;
  s.mem_bytes = mem_.size();
  s.cpu_model = config_.cpu_model;
  s.cpuid = boot_cpuid_;
  s.vm = vm_.save_state();
  if (held_clock_ns_) s.vm.clock_ns = *held_clock_ns_;  // the guest's time stood still since
  for (const Vcpu& v : vcpus_.vcpus()) s.vcpus.push_back(v.save_state());
  s.serial = serial_->save();
  save_devices(s);
  return s;
}

// The device part of the saved state; MachineBuilder's device section restores it.
void MachineImpl::save_devices(MachineState& s) const {
  for (size_t i = 0; i < virtio_.size(); ++i)
    s.virtio.push_back({config_.devices[i], virtio_[i].transport->save(),
                        virtio_[i].transport->device().save_state()});
}

std::unique_ptr<Machine> Machine::create(const MachineConfig& config, const Kvm& kvm,
                                         uint64_t t0_ns, std::optional<Vm> vm) {
  uint32_t max = max_vcpus(kvm);
  if (config.vcpus == 0 || config.vcpus > max)
    throw Error("--vcpus " + std::to_string(config.vcpus) + ": must be between 1 and " +
                std::to_string(max) + " on this host");
  MachineBuilder builder(config, kvm, t0_ns,
                         GuestMemory::create(config.mem_bytes, config.huge_pages),
                         vm ? std::move(*vm) : kvm.create_vm());
  builder.build_common(builder.create_devices());
  BootSetup boot{config.kernel_path, config.initrd_path, config.cmdline, config.vcpus};
  boot.kernel_fd = config.kernel_fd;
  boot.initrd_fd = config.initrd_fd;
  builder.boot(boot);
  return builder.finish();
}

std::unique_ptr<Machine> Machine::restore(const MachineConfig& config, const MachineState& state,
                                          GuestMemory memory, const Kvm& kvm, uint64_t t0_ns,
                                          std::optional<Vm> vm) {
  uint32_t max = max_vcpus(kvm);
  if (state.vcpus.empty() || state.vcpus.size() > max)
    throw Error("snapshot has " + std::to_string(state.vcpus.size()) +
                " vCPUs: must be between 1 and " + std::to_string(max) + " on this host");
  if (memory.size() != state.mem_bytes)
    throw Error("snapshot memory is " + std::to_string(memory.size()) + " bytes, its state says " +
                std::to_string(state.mem_bytes));
  MachineConfig c = config;
  c.vcpus = static_cast<uint32_t>(state.vcpus.size());
  c.mem_bytes = state.mem_bytes;
  c.cpu_model = state.cpu_model;  // the CPU the guest was booted on, as its snapshot records
  MachineBuilder builder(c, kvm, t0_ns, std::move(memory), vm ? std::move(*vm) : kvm.create_vm());
  builder.build_common(builder.restore_devices(state));
  builder.restore(state);
  return builder.finish();
}

}  // namespace wisp
