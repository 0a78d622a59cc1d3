#include "vmm/main/run_command.h"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "api/vm_limits.h"
#include "base/error.h"
#include "base/exit_codes.h"
#include "base/log.h"
#include "base/options.h"
#include "base/self_exe.h"
#include "vmm/jail/jail.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/machine.h"
#include "vmm/main/boot_description.h"
#include "vmm/main/jail_setup.h"
#include "vmm/main/machine_control.h"
#include "vmm/main/rootfs_boot.h"
#include "vmm/main/vmm_process.h"
#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/net/tap_backend.h"
#include "vmm/virtio/vsock/vsock_muxer.h"

namespace wisp {
namespace {

constexpr const char* kCommand = "wisp run";

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
  --mem SIZE       guest RAM: MiB, or with a suffix M or G (default 128, 16 MiB to 64 GiB)
  --vcpus N        number of vCPUs (default 1, at most 254)
  --console MODE   stdio (default): guest console on stdout, keyboard on stdin;
                   none: discard; FILE: write the console to FILE. On a terminal, escape
                   sequences other than colours are dropped (the guest cannot retitle,
                   query or reprogram the host's terminal)
  --console-max-bytes SIZE
                   cap of a console FILE: bytes, or with a suffix K, M or G (default 16M);
                   output past it is dropped
  --drive PATH[,ro][,bw=RATE][,bw-burst=SIZE][,ops=RATE][,ops-burst=N][,refill-ms=MS]
                   attach a raw disk image as virtio-blk (repeatable: /dev/vda, /dev/vdb,
                   ...); ",ro" makes it read-only. Rate limit (Firecracker's token buckets):
                   bw= bytes/s and ops= requests/s (K, M, G: powers of 1024), each bucket
                   holding refill-ms (default 1000) worth; -burst= a one-time extra on top.
                   A guest over its limit waits, its requests are never failed
  --vsock-uds PATH virtio-vsock, bridged to Unix sockets as Firecracker does: a host process
                   connects to PATH and writes "CONNECT <port>\n" to reach the guest's listener
                   on that port (answer: "OK <host_port>\n", then the byte stream); guest
                   connections to CID 2 port P are forwarded to the Unix socket PATH_P
  --vsock-cid N    the guest's vsock CID (default 3; 3..4294967294)
  --net            (wisp run, not wisp-vmm run) a NIC in a network namespace of the VM's own:
                   wisp makes it (TAP wisp0 inside, a veth pair to the host: host end wvN
                   with a /30 of 10.200.0.0/16 per VM, SNAT) and passes it on as
                   --netns-fd; eth0 is always 172.16.0.2/30, gateway 172.16.0.1, MTU 1500;
                   all of it goes when the VM ends
  --allow CIDR[:PORT]
                   (wisp run, with --net) the guest may open TCP and UDP flows to CIDR (PORT
                   only, when given); repeatable; nothing else by default, the host included
  --net tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR][,rx-bw=RATE][,tx-bw=RATE]...
                   a virtio-net NIC on the existing TAP NAME (repeatable: eth0, eth1, ...),
                   opened before the VMM enters its jail; MAC default 02:54:00:12:34:56;
                   with ip= the kernel command line gets "wisp.net=ADDR/PREFIX,GW,MTU",
                   which the agent applies to eth0 (MTU 1500). Rate limits per direction
                   (rx: to the guest, tx: from it), as --drive's: rx-bw=, rx-bw-burst=,
                   rx-ops=, rx-ops-burst=, the same with tx-, and refill-ms=; bytes are
                   Ethernet frame bytes, an op is a frame
  --control-socket PATH
                   listen on the Unix socket PATH for control commands (wisp snapshot create
                   uses it): ping, pause, resume, snapshot [--diff] DIR, stats
  --no-rng         no virtio-rng device (default: one, fed from the host's getrandom)
  --no-hugepages   guest RAM on 4 KiB pages (default: 2 MiB transparent huge pages, so KVM
                   maps 2 MiB at a time; this switch is there to measure against)
  --portable       show the guest a baseline CPU: the host's CPUID with every instruction-set
                   feature beyond x86-64-v2 hidden (AVX*, AVX-512, FMA, BMI, XSAVE, ...), so
                   its code runs on any host CPU at least that new; its snapshots record it
  --timings        print a JSON line to stderr at exit: milliseconds from process start to
                   kernel loaded, first KVM_RUN and exit; the jail's cost; why it stopped;
                   exit counts; the event loop's longest iteration (loop_max_ms)
%s%s  -v, --verbose    log VMM diagnostics to stderr (twice: debug)
  -h, --help       show this help

Interactive console: Ctrl-A x ends the VM.

Exit status:
  0  the guest powered off or rebooted
  1  error: unreadable or malformed kernel/initrd, memory too small, VMM failure
  2  usage error
  3  the guest kernel panicked
  4  no usable KVM: /dev/kvm is missing, or is kvm_pvm (cannot boot Linux guests)
  5  the VMM was killed by its seccomp filter (the message names the system call)
  6  the VMM was killed by its cgroup's memory limit
  128+N  stopped by signal N (SIGINT, SIGTERM, SIGHUP), or the VMM was killed by it

The VMM runs jailed: its own pid, mount, ipc, uts and net namespaces, a root holding only the
VM's files, a cgroup (memory.max = guest RAM + 128 MiB, pids.max), a uid of its own, no
capabilities and a seccomp filter per thread. This needs root. Unix sockets: guest
connections to PATH_P need the listener connectable by the VM's uid (mode 0666, or a private
directory, which the VM's group is given).
)";

// What `wisp run` was asked for, before it becomes a MachineConfig.
struct RunOptions {
  MachineConfig cfg;
  std::string extra_cmdline, rootfs;
  bool raw_cmdline = false, no_initrd = false, timings = false;
  bool kernel_given = false, initrd_given = false;
  int verbose = 0;
  VmmJailOptions jail;
  std::optional<uint64_t> vsock_cid;
  uint64_t mem_bytes = 128ull << 20;
  // The devices, gathered by kind; cfg.devices lists them in slot order once parsing is done.
  std::vector<BlockSpec> drives;
  bool rng = true;
  std::optional<VsockSpec> vsock;
  std::vector<NetOption> nets;
};

OptionParser run_parser(RunOptions* o) {
  MachineConfig* cfg = &o->cfg;
  OptionParser p(kCommand);
  p.value("kernel",
          [o](const std::string& v) {
            o->cfg.kernel_path = v;
            o->kernel_given = true;
          })
      .value("initrd",
             [o](const std::string& v) {
               o->cfg.initrd_path = v;
               o->initrd_given = true;
             })
      .flag("no-initrd", &o->no_initrd)
      .text("cmdline", &o->extra_cmdline, /*allow_empty=*/true)
      .flag("raw-cmdline", &o->raw_cmdline)
      .size("mem", &o->mem_bytes, 1ull << 20, kMinGuestMemBytes, kMaxGuestMemBytes)
      // Only 0 is a usage error: the upper bound depends on this host's KVM, so Machine::create
      // checks it (exit 1, "must be between 1 and N on this host").
      .count("vcpus", &cfg->vcpus, 1, UINT32_MAX)
      .value("drive", [o](const std::string& v) { o->drives.push_back(parse_drive_spec(v)); })
      .value("vsock-uds",
             [o](const std::string& v) {
               if (!o->vsock) o->vsock.emplace();
               o->vsock->uds_path = v;
             })
      .value("vsock-cid", [o](const std::string& v) { o->vsock_cid = parse_vsock_cid(v); })
      .value("net",
             [o](const std::string& v) {
               try {
                 o->nets.push_back(parse_net_option(v));
               } catch (const Error& e) {
                 throw UsageError(e.what());
               }
             })
      .text("rootfs", &o->rootfs)
      .value("control-socket",
             [cfg](const std::string& v) {
               if (v.empty()) throw UsageError("--control-socket: expected a socket path");
               cfg->control_socket = v;
               cfg->control_service = machine_control();
             })
      .flag("no-rng", [o] { o->rng = false; })
      .flag("no-hugepages", [cfg] { cfg->huge_pages = false; })
      .flag("portable", [cfg] { cfg->cpu_model = CpuModel::kX86_64_v2; })
      .flag("timings", &o->timings);
  add_console_options(p, cfg);
  add_verbose_option(p, &o->verbose);
  add_vmm_jail_options(p, &o->jail);
  return p;
}

// The checks between options, then the defaults that depend on them (the default guest, the
// command line). Throws UsageError.
void finish_config(RunOptions* o) {
  MachineConfig& cfg = o->cfg;
  if (o->no_initrd && o->initrd_given) throw UsageError("--initrd and --no-initrd conflict");
  if (o->vsock_cid && !o->vsock) throw UsageError("--vsock-cid needs --vsock-uds");
  // The agent configures eth0 only (wisp.net is one word).
  for (size_t i = 1; i < o->nets.size(); ++i)
    if (!o->nets[i].guest.address.empty())
      throw UsageError("--net: ip= is for the first NIC (eth0) only");
  if (o->vsock) {
    if (o->vsock_cid) o->vsock->guest_cid = *o->vsock_cid;
    try {
      validate_vsock_config(*o->vsock);
    } catch (const Error& e) {
      throw UsageError(std::string("--vsock-uds: ") + e.what());
    }
  }
  if (!o->kernel_given) {
    cfg.kernel_path = self_dir() + "/../guest/vmlinux";
    if (!o->initrd_given && !o->no_initrd && o->rootfs.empty())
      cfg.initrd_path = self_dir() + "/../guest/initramfs.cpio.gz";
  }
  if (o->no_initrd) cfg.initrd_path.clear();
  cfg.mem_bytes = o->mem_bytes;
  BootDescription boot;
  boot.drives = o->drives;
  boot.rootfs = o->rootfs;
  boot.extra_cmdline = o->extra_cmdline;
  boot.raw_cmdline = o->raw_cmdline;
  boot.rng = o->rng;
  boot.vsock = o->vsock;
  boot.nets = o->nets;
  apply_boot_description(boot, &cfg);
}

void print_timings(const RunResult& r, double jail_ms) {
  std::fprintf(
      stderr,
      "{\"jail_ms\":%.3f,\"kernel_loaded_ms\":%.3f,\"first_kvm_run_ms\":%.3f,"
      "\"exit_ms\":%.3f,\"stop\":\"%s\",\"io_exits\":%llu,\"mmio_exits\":%llu,"
      "\"unhandled_io\":%llu,\"loop_max_ms\":%.3f}\n",
      jail_ms, static_cast<double>(r.kernel_loaded_us) / 1000.0,
      static_cast<double>(r.first_run_us) / 1000.0, static_cast<double>(r.exit_us) / 1000.0,
      stop_reason_name(r.reason), static_cast<unsigned long long>(r.io_exits),
      static_cast<unsigned long long>(r.mmio_exits),
      static_cast<unsigned long long>(r.unhandled_io), static_cast<double>(r.loop_max_us) / 1000.0);
}

// The VM itself, inside the jail: everything is opened and built, then the privileges go,
// then the threads start (each entering its filter) and the guest runs.
int run_vm(RunOptions& o, jail::Confinement& confinement, uint64_t t0_ns) {
  RunResult r;
  try {
    Kvm kvm = Kvm::open(dev_kvm_path());
    confine_threads(confinement, &o.cfg);
    auto machine = Machine::create(o.cfg, kvm, t0_ns);
    LOG_INFO("booting %s (%u vCPU, %llu MiB)", o.cfg.kernel_path.c_str(), o.cfg.vcpus,
             static_cast<unsigned long long>(o.mem_bytes >> 20));
    confinement.drop_privileges();
    r = machine->run();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
    return kExitError;
  }
  if (o.timings) print_timings(r, confinement.jail_ms());
  return exit_code_for(r);
}

}  // namespace

int run_command(int argc, char** argv, uint64_t t0_ns) {
  RunOptions o;
  try {
    OptionParser::Result args = run_parser(&o).parse(argc, argv);
    if (args.help) {
      std::printf(kUsage, default_kernel_cmdline().c_str(), rootfs_kernel_args().c_str(),
                  kJailOptionsHelp, kVmmJailOptionsHelp);
      return kExitOk;
    }
    if (!args.operands.empty() || args.dashdash)
      throw UsageError("unexpected argument '" +
                       (args.operands.empty() ? std::string("--") : args.operands[0]) + "'");
    finish_config(&o);
  } catch (const UsageError& e) {
    return usage_error(kCommand, e.what());
  }
  apply_verbosity(o.verbose);
  if (int rc = check_kvm_usable()) return rc;
  warn_debug_jail_flags(o.jail.flags);
  try {
    enter_vm_netns(&o.jail);
    // The jail's /dev holds no TAP (nor its network namespace unless --netns-fd): open them
    // here, as root.
    for (const NetOption& net : o.nets)
      provide_tap_fd(net.spec.tap_name, open_tap(net.spec.tap_name));
    jail::JailConfig jail = vmm_jail_config(o.jail, &o.cfg, {}, provided_tap_fds());
    return jail::run_jailed(jail, [&](jail::Confinement& c) { return run_vm(o, c, t0_ns); });
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
    return kExitError;
  }
}

}  // namespace wisp
