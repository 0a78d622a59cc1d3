#include "vmm/machine/machine.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "vmm/acpi/pm_control.h"
#include "vmm/arch/cpuid.h"
#include "vmm/arch/msrs.h"
#include "base/error.h"
#include "base/log.h"
#include "vmm/boot/kernel_loader.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/long_mode.h"
#include "vmm/boot/mptable.h"
#include "vmm/bus/io_bus.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/irq_line.h"
#include "vmm/devices/serial.h"
#include "vmm/event/event_loop.h"
#include "vmm/machine/console_watch.h"
#include "vmm/machine/control_socket.h"
#include "vmm/machine/terminal.h"
#include "vmm/memory/guest_memory.h"
#include "base/clock.h"

namespace wisp {

CpuidEntries guest_cpuid(const Kvm& kvm, uint32_t id, uint32_t vcpus) {
  CpuidOptions options;
  options.tsc_deadline_timer = kvm.has_tsc_deadline_timer();
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

// Interrupts a vCPU blocked in KVM_RUN (SIGRTMIN is not a constant in glibc).
int kick_signal() { return SIGRTMIN + 1; }


void write_all(int fd, std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // console gone (closed pipe): the guest keeps running regardless
    done += static_cast<size_t>(n);
  }
}

class MachineImpl final : public Machine {
 public:
  // Boots from config.kernel_path (state == nullptr) or rebuilds from `state` over `memory`.
  MachineImpl(const MachineConfig& config, const Kvm& kvm, uint64_t t0_ns, GuestMemory memory,
              const MachineState* state);
  RunResult run() override;
  void pause() override;
  void resume() override;
  bool paused() const override { return paused_; }
  MachineState save_state() override;
  const GuestMemory& memory() const override { return mem_; }

 private:
  void boot(const Kvm& kvm);
  void restore_from(const Kvm& kvm, const MachineState& state);
  void park(size_t index);
  void on_console_output(std::span<const uint8_t> bytes);
  void on_stdin(uint32_t events);
  void request_stop(StopReason reason, std::string detail);
  void vcpu_thread(size_t index);

  MachineConfig config_;
  uint64_t t0_ns_;
  GuestMemory mem_;
  Vm vm_;
  std::vector<Vcpu> vcpus_;
  IoBus pio_{"port I/O"};
  IoBus mmio_{"MMIO"};
  EventLoop loop_;
  EventFdIrq serial_irq_;
  std::shared_ptr<Serial> serial_;
  UniqueFd console_fd_;  // for Console::kFile
  ConsoleWatch watch_;   // touched only under serial's lock (the sink runs there)
  ExitCounters counters_;
  // After mmio_ and loop_: destroyed before the bus and loop that refer to them.
  std::vector<AttachedVirtioDevice> virtio_;

  std::mutex stop_mu_;
  StopReason stop_reason_ = StopReason::kNone;
  std::string stop_detail_;
  bool panicked_ = false;
  int signal_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> first_run_ns_{0};
  uint64_t kernel_loaded_ns_ = 0;
  uint8_t escape_state_ = 0;  // Ctrl-A seen on the console input

  // Pausing (control socket): the loop thread sets pause_requested_ and kicks the vCPUs; each
  // parks in park() until resume. parked_ counts parked vCPUs. Guarded by pause_mu_.
  std::mutex pause_mu_;
  std::condition_variable pause_cv_;
  std::atomic<bool> pause_requested_{false};
  size_t parked_ = 0;
  bool paused_ = false;  // loop thread only
  std::vector<pthread_t> vcpu_threads_;
  CpuidEntries boot_cpuid_;  // vCPU 0's, saved with the state
  std::unique_ptr<ControlSocket> control_;
};

MachineImpl::MachineImpl(const MachineConfig& config, const Kvm& kvm, uint64_t t0_ns,
                         GuestMemory memory, const MachineState* state)
    : config_(config), t0_ns_(t0_ns), mem_(std::move(memory)), vm_(kvm.create_vm()) {
  vm_.set_identity_map_address(layout::kKvmIdentityMapAddr);
  vm_.set_tss_address(layout::kKvmTssAddr);
  vm_.create_irqchip();
  vm_.create_pit();
  uint32_t slot = 0;
  for (const auto& r : mem_.regions())
    vm_.set_memory_region(slot++, r.guest_base.value(), r.size, r.host);

  std::vector<std::shared_ptr<VirtioDevice>> devices = create_virtio_devices(config.devices);
  if (state) {
    // Device state first: a device must know its saved identity (capacity, vsock CID) before
    // the transport re-activates it.
    if (devices.size() != state->virtio.size())
      throw Error("snapshot has " + std::to_string(state->virtio.size()) +
                  " virtio devices, the restored machine " + std::to_string(devices.size()));
    for (size_t i = 0; i < devices.size(); ++i) devices[i]->restore_state(state->virtio[i].device);
  }
  virtio_ = attach_virtio_devices(vm_, mmio_, loop_, mem_, devices);

  if (config.console == MachineConfig::Console::kFile) {
    console_fd_ = UniqueFd(
        ::open(config.console_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!console_fd_) throw Error(errno_message("console file " + config.console_file));
  }
  serial_ = std::make_shared<Serial>(serial_irq_,
                                     [this](std::span<const uint8_t> b) { on_console_output(b); });
  vm_.register_irqfd(serial_irq_.fd(), Serial::kCom1Irq);
  pio_.insert(Serial::kCom1Base, Serial::kPortCount, serial_);
  pio_.insert(PmControl::kBasePort, PmControl::kRangeLength, std::make_shared<PmControl>([this] {
                request_stop(StopReason::kPowerOff, "ACPI S5 (power off)");
              }));
  pio_.insert(I8042::kDataPort, I8042::kRangeLength,
              std::make_shared<I8042>([this] { request_stop(StopReason::kReset, "i8042 reset"); }));

  if (state)
    restore_from(kvm, *state);
  else
    boot(kvm);

  if (!config.control_socket.empty()) {
    ControlHandler handler = config.control_handler;
    control_ = std::make_unique<ControlSocket>(
        config.control_socket, loop_, [this, handler](const std::string& line) -> std::string {
          if (!handler) return "error this VMM answers no control commands";
          return handler(*this, line);
        });
  }
}

void MachineImpl::boot(const Kvm& kvm) {
  // Devices go first so they stay ahead of a user's "--" (arguments for init).
  std::string cmdline = config_.cmdline;
  if (std::string v = virtio_kernel_cmdline(virtio_); !v.empty()) cmdline = v + " " + cmdline;
  BootSetup boot{config_.kernel_path, config_.initrd_path, cmdline, config_.vcpus};
  LoadedKernel kernel = load_boot_image(mem_, boot);
  kernel_loaded_ns_ = now_ns();

  LongModeEntry entry = setup_long_mode(mem_, kernel.image.entry, kernel.boot_params_addr);
  for (uint32_t id = 0; id < config_.vcpus; ++id) {
    Vcpu vcpu = vm_.create_vcpu(id, kvm.vcpu_mmap_size());
    CpuidEntries cpuid = guest_cpuid(kvm, id, config_.vcpus);
    vcpu.set_cpuid(cpuid);
    if (id == 0) boot_cpuid_ = cpuid;
    vcpu.set_msrs(boot_msrs());
    vcpu.init_fpu();
    vcpu.init_lapic_lints();
    // Application processors wait in KVM for INIT/SIPI from the boot CPU; only it needs
    // registers.
    if (id == 0) vcpu.set_long_mode_entry(entry);
    vcpus_.push_back(std::move(vcpu));
  }
}

void MachineImpl::restore_from(const Kvm& kvm, const MachineState& state) {
  if (state.vcpus.size() != config_.vcpus)
    throw Error("snapshot has " + std::to_string(state.vcpus.size()) + " vCPUs, expected " +
                std::to_string(config_.vcpus));
  // Order after Firecracker: the VM's irqchip, PIT and clock, then each vCPU (CPUID before
  // its registers, so KVM accepts the saved XSAVE and MSRs), then the devices.
  vm_.restore_state(state.vm);
  for (uint32_t id = 0; id < config_.vcpus; ++id) {
    Vcpu vcpu = vm_.create_vcpu(id, kvm.vcpu_mmap_size());
    CpuidEntries cpuid = guest_cpuid(kvm, id, config_.vcpus);
    vcpu.set_cpuid(cpuid);
    if (id == 0) boot_cpuid_ = cpuid;
    if (state.vcpus[id].id != id)
      throw Error("snapshot vCPU " + std::to_string(id) + " has id " +
                  std::to_string(state.vcpus[id].id));
    vcpu.restore_state(state.vcpus[id]);
    vcpus_.push_back(std::move(vcpu));
  }
  serial_->restore(state.serial);
  for (size_t i = 0; i < virtio_.size(); ++i)
    virtio_[i].transport->restore(state.virtio[i].transport);
  kernel_loaded_ns_ = now_ns();
}

void MachineImpl::on_console_output(std::span<const uint8_t> bytes) {
  if (config_.console == MachineConfig::Console::kStdio) write_all(STDOUT_FILENO, bytes);
  if (console_fd_) write_all(console_fd_.get(), bytes);
  switch (watch_.feed(bytes)) {
    case ConsoleWatch::Event::kPanic: {
      std::lock_guard lock(stop_mu_);
      panicked_ = true;
      stop_detail_ = watch_.panic_line();
      break;
    }
    case ConsoleWatch::Event::kPanicEnd:
      request_stop(StopReason::kCrash, watch_.panic_line());
      break;
    case ConsoleWatch::Event::kHalt:
      request_stop(StopReason::kPowerOff, "guest halted");
      break;
    case ConsoleWatch::Event::kNone:
      break;
  }
}

void MachineImpl::request_stop(StopReason reason, std::string detail) {
  {
    std::lock_guard lock(stop_mu_);
    if (stop_reason_ == StopReason::kNone) {
      stop_reason_ = reason;
      if (!panicked_) stop_detail_ = std::move(detail);
    }
  }
  stopping_.store(true);
  loop_.stop();
}

void MachineImpl::on_stdin(uint32_t) {
  uint8_t buf[256];
  ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
  if (n <= 0) {
    // End of input (or an error): the guest keeps running, we just stop listening.
    loop_.remove(STDIN_FILENO);
    return;
  }
  // Ctrl-A x ends the VM from an interactive console, as in QEMU.
  for (ssize_t i = 0; i < n; ++i) {
    if (escape_state_ && (buf[i] == 'x' || buf[i] == 'X')) {
      request_stop(StopReason::kPowerOff, "Ctrl-A x on the console");
      return;
    }
    escape_state_ = buf[i] == 0x01;
  }
  serial_->enqueue_input(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
}

void MachineImpl::park(size_t index) {
  Vcpu& vcpu = vcpus_[index];
  try {
    // An I/O exit is finished by the next KVM_RUN; with immediate_exit set that run returns
    // at once, so the saved registers are past the instruction (see Vcpu::save_state).
    vcpu.complete_pending_io();
  } catch (const Error& e) {
    request_stop(StopReason::kError, e.what());
  }
  std::unique_lock lock(pause_mu_);
  ++parked_;
  pause_cv_.notify_all();
  pause_cv_.wait(lock, [this] { return !pause_requested_.load() || stopping_.load(); });
  --parked_;
}

void MachineImpl::pause() {
  if (paused_) return;
  {
    std::lock_guard lock(pause_mu_);
    pause_requested_.store(true);
  }
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    vcpus_[i].set_immediate_exit(true);
    if (i < vcpu_threads_.size()) pthread_kill(vcpu_threads_[i], kick_signal());
  }
  std::unique_lock lock(pause_mu_);
  // A vCPU that already left its loop (stopping) never parks; do not wait for it then.
  pause_cv_.wait(lock, [this] { return parked_ == vcpus_.size() || stopping_.load(); });
  if (stopping_.load() && parked_ != vcpus_.size()) {
    pause_requested_.store(false);
    pause_cv_.notify_all();
    throw Error("the VM is stopping");
  }
  for (auto& v : vcpus_) v.kvmclock_ctrl();
  paused_ = true;
}

void MachineImpl::resume() {
  if (!paused_) return;
  for (auto& v : vcpus_) v.set_immediate_exit(false);
  {
    std::lock_guard lock(pause_mu_);
    pause_requested_.store(false);
  }
  pause_cv_.notify_all();
  paused_ = false;
}

MachineState MachineImpl::save_state() {
  if (!paused_) throw Error("the VM must be paused to save its state");
  MachineState s;
  s.mem_bytes = mem_.size();
  s.cpuid = boot_cpuid_;
  s.vm = vm_.save_state();
  for (const Vcpu& v : vcpus_) s.vcpus.push_back(v.save_state());
  s.serial = serial_->save();
  for (size_t i = 0; i < virtio_.size(); ++i)
    s.virtio.push_back({config_.devices[i], virtio_[i].transport->save(),
                        virtio_[i].transport->device().save_state()});
  return s;
}

void MachineImpl::vcpu_thread(size_t index) {
  Vcpu& vcpu = vcpus_[index];
  if (index == 0) {
    uint64_t expected = 0;
    first_run_ns_.compare_exchange_strong(expected, now_ns());
  }
  while (!stopping_.load(std::memory_order_relaxed)) {
    if (pause_requested_.load()) {
      park(index);
      continue;
    }
    VcpuExit exit;
    try {
      exit = vcpu.run();
    } catch (const Error& e) {
      request_stop(StopReason::kError, e.what());
      return;
    }
    ExitVerdict v = handle_exit(exit, pio_, mmio_, counters_);
    if (exit.kind == VcpuExit::Kind::kIo && exit.addr != Serial::kCom1Base)
      LOG_DEBUG("vCPU %zu: %s port 0x%llx size %u -> 0x%x", index, exit.is_write ? "out" : "in",
                static_cast<unsigned long long>(exit.addr), exit.size,
                exit.data.empty() ? 0u : exit.data[0]);
    if (!v.keep_running) {
      request_stop(v.reason, v.detail.empty() ? std::string(stop_reason_name(v.reason))
                                              : "vCPU " + std::to_string(index) + ": " + v.detail);
      return;
    }
  }
}

RunResult MachineImpl::run() {
  // A handler that does nothing: its only job is to make KVM_RUN return EINTR.
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigemptyset(&sa.sa_mask);
  sigaction(kick_signal(), &sa, nullptr);

  std::unique_ptr<RawTerminal> term;
  if (config_.console == MachineConfig::Console::kStdio) {
    term = std::make_unique<RawTerminal>(STDIN_FILENO);
    int fl = fcntl(STDIN_FILENO, F_GETFL);
    if (fl >= 0 && fcntl(STDIN_FILENO, F_SETFL, fl | O_NONBLOCK) == 0) {
      try {
        loop_.add(STDIN_FILENO, [this](uint32_t ev) { on_stdin(ev); });
      } catch (const Error&) {
        // stdin is a regular file or /dev/null (epoll refuses those): no console input.
      }
      fcntl(STDIN_FILENO, F_SETFL, fl);
    }
  }

  // SIGINT/SIGTERM/SIGHUP end the VM cleanly (terminal restored, exit status says why). They
  // are blocked in every thread (vCPU threads inherit the mask) and read on the loop thread.
  sigset_t stop_signals, old_mask;
  sigemptyset(&stop_signals);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop_signals, s);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
  UniqueFd sigfd(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd) throw_errno("signalfd");
  loop_.add(sigfd.get(), [this, fd = sigfd.get()](uint32_t) {
    signalfd_siginfo info{};
    if (::read(fd, &info, sizeof(info)) == sizeof(info)) {
      {
        std::lock_guard lock(stop_mu_);
        signal_ = static_cast<int>(info.ssi_signo);
      }
      request_stop(StopReason::kSignal, std::string("stopped by ") + strsignal(signal_));
    }
  });

  std::vector<std::thread> threads;
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    threads.emplace_back([this, i] {
      vcpu_thread(i);
      // A vCPU that stops (guest power-off, error) never parks: wake a pause() waiting for it.
      std::lock_guard lock(pause_mu_);
      pause_cv_.notify_all();
    });
    vcpu_threads_.push_back(threads.back().native_handle());
  }
  loop_.run();

  {
    std::lock_guard lock(pause_mu_);
    stopping_.store(true);
  }
  pause_cv_.notify_all();
  for (size_t i = 0; i < threads.size(); ++i) {
    vcpus_[i].set_immediate_exit(true);
    pthread_kill(threads[i].native_handle(), kick_signal());
  }
  for (auto& t : threads) t.join();
  uint64_t end = now_ns();
  term.reset();
  loop_.remove(sigfd.get());
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);

  RunResult r;
  {
    std::lock_guard lock(stop_mu_);
    r.reason = stop_reason_;
    r.detail = stop_detail_;
    r.panicked = panicked_;
    r.signal = signal_;
  }
  if (r.panicked) r.reason = StopReason::kCrash;
  uint64_t first = first_run_ns_.load();
  r.first_run_us = first > t0_ns_ ? (first - t0_ns_) / 1000 : 0;
  r.kernel_loaded_us = (kernel_loaded_ns_ - t0_ns_) / 1000;
  r.exit_us = (end - t0_ns_) / 1000;
  r.io_exits = counters_.io_exits.load();
  r.mmio_exits = counters_.mmio_exits.load();
  r.unhandled_io = counters_.unhandled_io.load();
  return r;
}

}  // namespace

std::unique_ptr<Machine> Machine::create(const MachineConfig& config, const Kvm& kvm,
                                         uint64_t t0_ns) {
  uint32_t max = std::min<uint32_t>(static_cast<uint32_t>(kvm.max_vcpus()), kMpTableMaxCpus);
  if (config.vcpus == 0 || config.vcpus > max)
    throw Error("--vcpus " + std::to_string(config.vcpus) + ": must be between 1 and " +
                std::to_string(max) + " on this host");
  return std::make_unique<MachineImpl>(config, kvm, t0_ns, GuestMemory::create(config.mem_bytes),
                                       nullptr);
}

std::unique_ptr<Machine> Machine::restore(const MachineConfig& config, const MachineState& state,
                                          GuestMemory memory, const Kvm& kvm, uint64_t t0_ns) {
  uint32_t max = std::min<uint32_t>(static_cast<uint32_t>(kvm.max_vcpus()), kMpTableMaxCpus);
  if (state.vcpus.empty() || state.vcpus.size() > max)
    throw Error("snapshot has " + std::to_string(state.vcpus.size()) +
                " vCPUs: must be between 1 and " + std::to_string(max) + " on this host");
  if (memory.size() != state.mem_bytes)
    throw Error("snapshot memory is " + std::to_string(memory.size()) + " bytes, its state says " +
                std::to_string(state.mem_bytes));
  MachineConfig c = config;
  c.vcpus = static_cast<uint32_t>(state.vcpus.size());
  c.mem_bytes = state.mem_bytes;
  return std::make_unique<MachineImpl>(c, kvm, t0_ns, std::move(memory), &state);
}

}  // namespace wisp
