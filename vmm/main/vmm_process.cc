#include "vmm/main/vmm_process.h"

#include <pthread.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/clock.h"
#include "base/exit_codes.h"
#include "base/log.h"
#include "vmm/kvm/kvm.h"

namespace wisp {
namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// Set the console from --console MODE; false for an empty MODE.
bool set_console(const std::string& mode, MachineConfig* cfg) {
  if (mode.empty()) return false;
  if (mode == "stdio") {
    cfg->console = MachineConfig::Console::kStdio;
  } else if (mode == "none") {
    cfg->console = MachineConfig::Console::kNone;
  } else {
    cfg->console = MachineConfig::Console::kFile;
    cfg->console_file = mode;
  }
  return true;
}

}  // namespace

uint64_t process_start_ns() {
  uint64_t now = now_ns();
  const char* v = std::getenv("WISP_START_NS");
  if (!v) return now;
  uint64_t start = 0;
  auto [end, ec] = std::from_chars(v, v + std::strlen(v), start);
  unsetenv("WISP_START_NS");
  // Only a time from this boot's recent past: anything else is not from our own `wisp`.
  bool sane = ec == std::errc() && *end == '\0' && start <= now && now - start < 60'000'000'000;
  return sane ? start : now;
}

void small_thread_stacks() {
  constexpr size_t kStackBytes = size_t{1} << 20;
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return;
  if (pthread_attr_setstacksize(&attr, kStackBytes) != 0 || pthread_setattr_default_np(&attr) != 0)
    LOG_WARN("thread stacks keep glibc's default size");
  pthread_attr_destroy(&attr);
}

void add_console_options(OptionParser& parser, MachineConfig* cfg) {
  parser.value("console", [cfg](const std::string& mode) {
    if (!set_console(mode, cfg)) throw UsageError("--console: empty value");
  });
  parser.size("console-max-bytes", &cfg->console_max_bytes, 1, 4096, uint64_t{1} << 40);
}

void add_verbose_option(OptionParser& parser, int* verbose) {
  parser.flag(
      "verbose", [verbose] { ++*verbose; }, 'v');
}

void apply_verbosity(int verbose) {
  set_log_level(verbose >= 2 ? LogLevel::kDebug : verbose == 1 ? LogLevel::kInfo : LogLevel::kWarn);
}

std::string dev_kvm_path() { return env_or("WISP_DEV_KVM", "/dev/kvm"); }

// Refuses hosts whose KVM cannot boot Linux, before anything else is attempted: on kvm_pvm a
// guest kernel dies in the instruction emulator or crawls, which looks like a hang.
// WISP_DEV_KVM and WISP_SYSFS_MODULE_DIR point these checks elsewhere (used by tests).
int check_kvm_usable() {
  std::string dev_kvm = dev_kvm_path();
  KvmFlavor f = detect_kvm_flavor(env_or("WISP_SYSFS_MODULE_DIR", "/sys/module"), dev_kvm);
  if (f == KvmFlavor::kNone) {
    std::fprintf(stderr,
                 "wisp: %s does not exist: this host has no KVM. Load kvm_intel or kvm_amd "
                 "(hardware virtualization must be enabled), or run inside a VM with nested "
                 "virtualization.\n",
                 dev_kvm.c_str());
    return kExitNoKvm;
  }
  if (f == KvmFlavor::kPvm) {
    std::fprintf(stderr,
                 "wisp: /dev/kvm here is kvm_pvm (software-assisted, no VMX/SVM), which cannot "
                 "boot Linux guests. wisp needs kvm_intel or kvm_amd. On this machine use the "
                 "nested-KVM testbed: tests/testbed/run -- build/bin/wisp run ...\n");
    return kExitNoKvm;
  }
  return 0;
}

int exit_code_for(const RunResult& r) {
  switch (r.reason) {
    case StopReason::kPowerOff:
    case StopReason::kReset:
      LOG_INFO("guest stopped: %s", stop_reason_name(r.reason));
      return kExitOk;
    case StopReason::kSignal:
      std::fprintf(stderr, "wisp: %s; the VM was stopped\n", r.detail.c_str());
      return kExitSignalBase + r.signal;
    case StopReason::kCrash:
      std::fprintf(stderr, "wisp: guest panicked: %s\n",
                   r.detail.empty() ? "KVM reported a guest crash" : r.detail.c_str());
      return kExitGuestPanic;
    default:
      std::fprintf(stderr, "wisp: VM failed: %s\n",
                   r.detail.empty() ? "unknown" : r.detail.c_str());
      return kExitError;
  }
}

}  // namespace wisp
