#include "cli/run_command.h"

#include <getopt.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "cli/cli_util.h"
#include "cli/control_handler.h"
#include "cli/rootfs_boot.h"
#include "base/error.h"
#include "base/log.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/machine.h"
#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/vsock/vsock_muxer.h"

namespace wisp {
namespace {

constexpr const char* kUsage = R"(Usage: wisp run [OPTIONS]

Boot a Linux kernel in a microVM with a serial console.

Options:
  --kernel PATH    ELF vmlinux or bzImage (default: the default guest built by make,
                   <wisp>/../guest/vmlinux)
  --initrd PATH    initramfs to load (default: <wisp>/../guest/initramfs.cpio.gz when the
                   kernel is the default one and there is no --rootfs; none otherwise)
  --no-initrd      boot without an initrd
  --cmdline STR    extra kernel command line, appended to wisp's microVM defaults:
                   "%s"
  --raw-cmdline    use --cmdline as the whole command line (no defaults, no --rootfs arguments)
  --rootfs IMAGE   boot wisp-agent from an ext4 root filesystem image (guest/build-rootfs.sh):
                   IMAGE becomes the first drive (/dev/vda), read-only, the command line gets
                   "%s"
                   (before --cmdline), and no initrd is loaded unless --initrd is given; the
                   agent keeps every write in a tmpfs overlay, so IMAGE is never written and
                   may be shared by many VMs
  --mem MIB        guest RAM in MiB (default 128, at least 16)
  --vcpus N        number of vCPUs (default 1)
  --console MODE   stdio (default): guest console on stdout, keyboard on stdin;
                   none: discard; FILE: write the console to FILE
  --drive PATH[,ro]  attach a raw disk image as virtio-blk (repeatable: /dev/vda, /dev/vdb,
                   ...); ",ro" makes it read-only
  --vsock-uds PATH virtio-vsock, bridged to Unix sockets as Firecracker does: a host process
                   connects to PATH and writes "CONNECT <port>\n" to reach the guest's listener
                   on that port (answer: "OK <host_port>\n", then the byte stream); guest
                   connections to CID 2 port P are forwarded to the Unix socket PATH_P
  --vsock-cid N    the guest's vsock CID (default 3; 3..4294967294)
  --control-socket PATH
                   listen on the Unix socket PATH for control commands (wisp snapshot create
                   uses it): ping, pause, resume, snapshot [--diff] DIR, stats
  --no-rng         no virtio-rng device (default: one, fed from the host's getrandom)
  --timings        print a JSON line to stderr at exit: milliseconds from process start to
                   kernel loaded, first KVM_RUN and exit; why it stopped; exit counts
  -v, --verbose    log VMM diagnostics to stderr (twice: debug)
  -h, --help       show this help

Interactive console: Ctrl-A x ends the VM.

Exit status:
  0  the guest powered off or rebooted
  1  error: unreadable or malformed kernel/initrd, memory too small, VMM failure
  2  usage error
  3  the guest kernel panicked
  4  no usable KVM: /dev/kvm is missing, or is kvm_pvm (cannot boot Linux guests)
  128+N  stopped by signal N (SIGINT, SIGTERM, SIGHUP)
)";

bool parse_u32(const char* s, uint32_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s, &end, 10);
  if (errno || end == s || *end || v > UINT32_MAX || s[0] == '-') return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "wisp run: %s\nTry 'wisp run --help'.\n", msg.c_str());
  return kExitUsage;
}

// Refuses hosts whose KVM cannot boot Linux, before anything else is attempted: on kvm_pvm a
// guest kernel dies in the instruction emulator or crawls, which looks like a hang.
// WISP_DEV_KVM and WISP_SYSFS_MODULE_DIR point these checks elsewhere (used by tests).
std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

int check_kvm(const std::string& dev_kvm) {
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

}  // namespace

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

int exit_code_for(const RunResult& r) {
  switch (r.reason) {
    case StopReason::kPowerOff:
    case StopReason::kReset:
      LOG_INFO("guest stopped: %s", stop_reason_name(r.reason));
      return kExitOk;
    case StopReason::kSignal:
      std::fprintf(stderr, "wisp: %s; the VM was stopped\n", r.detail.c_str());
      return 128 + r.signal;
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

int check_kvm_usable() { return check_kvm(env_or("WISP_DEV_KVM", "/dev/kvm")); }

std::string dev_kvm_path() { return env_or("WISP_DEV_KVM", "/dev/kvm"); }

int run_command(int argc, char** argv, unsigned long long t0_ns) {
  MachineConfig cfg;
  std::string extra_cmdline, rootfs;
  bool raw_cmdline = false, no_initrd = false, timings = false, kernel_given = false;
  bool initrd_given = false;
  int verbose = 0;
  std::optional<uint64_t> vsock_cid;
  uint32_t mem_mib = 128;
  // The devices, gathered by kind; cfg.devices lists them in slot order once parsing is done.
  std::vector<BlockSpec> drives;
  bool rng = true;
  std::optional<VsockSpec> vsock;

  enum {
    kKernel = 256,
    kInitrd,
    kNoInitrd,
    kCmdline,
    kRawCmdline,
    kMem,
    kVcpus,
    kConsole,
    kTimings,
    kDrive,
    kNoRng,
    kVsockUds,
    kVsockCid,
    kRootfs,
    kControlSocket,
  };
  static const option kOptions[] = {
      {"kernel", required_argument, nullptr, kKernel},
      {"initrd", required_argument, nullptr, kInitrd},
      {"no-initrd", no_argument, nullptr, kNoInitrd},
      {"cmdline", required_argument, nullptr, kCmdline},
      {"raw-cmdline", no_argument, nullptr, kRawCmdline},
      {"mem", required_argument, nullptr, kMem},
      {"vcpus", required_argument, nullptr, kVcpus},
      {"console", required_argument, nullptr, kConsole},
      {"timings", no_argument, nullptr, kTimings},
      {"drive", required_argument, nullptr, kDrive},
      {"no-rng", no_argument, nullptr, kNoRng},
      {"vsock-uds", required_argument, nullptr, kVsockUds},
      {"vsock-cid", required_argument, nullptr, kVsockCid},
      {"rootfs", required_argument, nullptr, kRootfs},
      {"control-socket", required_argument, nullptr, kControlSocket},
      {"verbose", no_argument, nullptr, 'v'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+vh", kOptions, nullptr)) != -1) {
    switch (c) {
      case kKernel:
        cfg.kernel_path = optarg;
        kernel_given = true;
        break;
      case kInitrd:
        cfg.initrd_path = optarg;
        initrd_given = true;
        break;
      case kNoInitrd:
        no_initrd = true;
        break;
      case kCmdline:
        extra_cmdline = optarg;
        break;
      case kRawCmdline:
        raw_cmdline = true;
        break;
      case kMem:
        if (!parse_u32(optarg, &mem_mib) || mem_mib < 16 || mem_mib > 64 * 1024)
          return usage_error(std::string("--mem ") + optarg +
                             ": expected MiB between 16 and 65536");
        break;
      case kVcpus:
        if (!parse_u32(optarg, &cfg.vcpus) || cfg.vcpus == 0)
          return usage_error(std::string("--vcpus ") + optarg + ": expected a positive integer");
        break;
      case kConsole:
        if (!set_console(optarg, &cfg)) return usage_error("--console: empty value");
        break;
      case kDrive:
        try {
          drives.push_back(parse_drive_spec(optarg));
        } catch (const Error& e) {
          return usage_error(std::string("--drive ") + optarg + ": " + e.what());
        }
        break;
      case kVsockUds:
        if (!vsock) vsock.emplace();
        vsock->uds_path = optarg;
        break;
      case kVsockCid:
        try {
          vsock_cid = parse_vsock_cid(optarg);
        } catch (const Error& e) {
          return usage_error(std::string("--vsock-cid ") + optarg + ": " + e.what());
        }
        break;
      case kRootfs:
        if (!*optarg) return usage_error("--rootfs: expected an image path");
        rootfs = optarg;
        break;
      case kControlSocket:
        if (!*optarg) return usage_error("--control-socket: expected a socket path");
        cfg.control_socket = optarg;
        cfg.control_handler = make_control_handler({});
        break;
      case kNoRng:
        rng = false;
        break;
      case kTimings:
        timings = true;
        break;
      case 'v':
        ++verbose;
        break;
      case 'h':
        std::printf(kUsage, default_kernel_cmdline().c_str(), rootfs_kernel_args().c_str());
        return kExitOk;
      default:
        return usage_error(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
    }
  }
  if (optind < argc) return usage_error(std::string("unexpected argument '") + argv[optind] + "'");
  if (no_initrd && initrd_given) return usage_error("--initrd and --no-initrd conflict");
  if (vsock_cid && !vsock) return usage_error("--vsock-cid needs --vsock-uds");
  if (vsock) {
    if (vsock_cid) vsock->guest_cid = *vsock_cid;
    try {
      validate_vsock_config(*vsock);
    } catch (const Error& e) {
      return usage_error(std::string("--vsock-uds: ") + e.what());
    }
  }
  // Drives in order (the first is /dev/vda), then rng, then vsock.
  cfg.devices.assign(drives.begin(), drives.end());
  if (rng) cfg.devices.push_back(RngSpec{});
  if (vsock) cfg.devices.push_back(*vsock);
  set_log_level(verbose >= 2 ? LogLevel::kDebug : verbose == 1 ? LogLevel::kInfo : LogLevel::kWarn);

  if (!kernel_given) {
    cfg.kernel_path = self_dir() + "/../guest/vmlinux";
    if (!initrd_given && !no_initrd && rootfs.empty())
      cfg.initrd_path = self_dir() + "/../guest/initramfs.cpio.gz";
  }
  if (no_initrd) cfg.initrd_path.clear();
  cfg.mem_bytes = uint64_t{mem_mib} << 20;
  if (!rootfs.empty()) {
    apply_rootfs(rootfs, default_kernel_cmdline(), extra_cmdline, raw_cmdline, &cfg);
  } else {
    cfg.cmdline =
        raw_cmdline ? extra_cmdline
                    : default_kernel_cmdline() + (extra_cmdline.empty() ? "" : " " + extra_cmdline);
  }

  std::string dev_kvm = env_or("WISP_DEV_KVM", "/dev/kvm");
  if (int rc = check_kvm(dev_kvm)) return rc;
  RunResult r;
  try {
    Kvm kvm = Kvm::open(dev_kvm);
    auto machine = Machine::create(cfg, kvm, t0_ns);
    LOG_INFO("booting %s (%u vCPU, %u MiB)", cfg.kernel_path.c_str(), cfg.vcpus, mem_mib);
    r = machine->run();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
    return kExitError;
  }
  if (timings) {
    std::fprintf(stderr,
                 "{\"kernel_loaded_ms\":%.3f,\"first_kvm_run_ms\":%.3f,\"exit_ms\":%.3f,"
                 "\"stop\":\"%s\",\"io_exits\":%llu,\"mmio_exits\":%llu,\"unhandled_io\":%llu}\n",
                 static_cast<double>(r.kernel_loaded_us) / 1000.0,
                 static_cast<double>(r.first_run_us) / 1000.0,
                 static_cast<double>(r.exit_us) / 1000.0, stop_reason_name(r.reason),
                 static_cast<unsigned long long>(r.io_exits),
                 static_cast<unsigned long long>(r.mmio_exits),
                 static_cast<unsigned long long>(r.unhandled_io));
  }
  return exit_code_for(r);
}

}  // namespace wisp
