#include "vmm/main/restore_command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>

#include "base/clock.h"
#include "base/error.h"
#include "base/exit_codes.h"
#include "base/file_io.h"
#include "base/log.h"
#include "base/options.h"
#include "snapshot/machine_snapshot.h"
#include "snapshot/snapshot_inputs.h"
#include "vmm/jail/jail.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/machine.h"
#include "vmm/main/jail_setup.h"
#include "vmm/main/machine_control.h"
#include "vmm/main/vmm_process.h"
#include "vmm/main/working_set_prefetch.h"
#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/net/tap_backend.h"
#include "vmm/virtio/vsock/vsock_muxer.h"

namespace wisp {
namespace {

constexpr const char* kCommand = "wisp snapshot restore";

constexpr const char* kUsage = R"(Usage: wisp snapshot restore DIR [OPTIONS]

Run a VM restored from the snapshot directory DIR (wisp snapshot create), until it powers off
or is stopped. Its memory is the snapshot's memory file mapped copy-on-write, so any number of
clones share its pages. Each drive is given again with --drive (in the snapshot's order), or
lies inside DIR; either way it must be the regular file the snapshot was taken with.

Options:
  --drive PATH[,ro]  the image for the snapshot's next drive (repeatable, /dev/vda first), with
                     the same mode the snapshot's guest has. Rate limits (bw=, ops=, ...)
                     and --net's rx-/tx- limits come from the snapshot, as they were when it
                     was taken; rate keys given here are accepted and not used
  --vsock-uds PATH   the clone's virtio-vsock Unix socket (see wisp run --help); required
                     when the snapshot has virtio-vsock, and each clone needs its own
  --net tap=NAME[,mac=MAC][,ip=...][,gw=...]
                     the TAP for the snapshot's next NIC (repeatable, eth0 first; default:
                     the TAP the snapshot was taken on), opened before the jail; a mac= must be
                     the snapshot's (the guest read it at boot), ip= and gw= are ignored (the
                     guest keeps the address it has). The guest's TCP connections from before
                     the snapshot are reset by peers that no longer know them
  --console MODE     stdio (default), none or FILE, as for wisp run
  --console-max-bytes SIZE
                     cap of a console FILE, as for wisp run (default 16M)
  --control-socket PATH
                     listen for control commands (wisp snapshot create --diff uses it)
  --ready-fd N       write "ready LOADED_MS RESTORED_MS JAIL_MS" to descriptor N (3 to 1024)
                     once the VM is rebuilt, just before its vCPUs run
  --memory-fd N      map the base layer's memory from descriptor N (3 to 1024) instead of
                     its file: a copy with the same size and bytes (wisp serve's, on a tmpfs
                     of 2 MiB pages, so KVM maps what the guest only reads 2 MiB at a time)
  --hugepages        copy the snapshot's memory into private RAM on 2 MiB huge pages before
                     the VM runs (KVM then maps 2 MiB at a time): the restore reads all of it
                     up front, and the clone no longer shares the memory file's pages with
                     other clones nor can take a diff snapshot (default: the file mapped
                     copy-on-write, 4 KiB pages, loaded as the guest touches them)
  --no-prefetch      do not load the snapshot's recorded working set (its file
                     working-set, written when a template is made) before the vCPUs run:
                     every page then loads on the guest's first touch (--hugepages loads
                     every page anyway)
  --no-prefault      load the working set into the VMM but do not map it in KVM's EPT/NPT
                     ahead (KVM_PRE_FAULT_MEMORY, Linux 6.10 and later; an older KVM never
                     does): each page then costs the guest an exit on its first touch
  --timings          print a JSON line to stderr at exit: milliseconds from process start to
                     the jail's cost, KVM open, snapshot loaded, VM restored, first KVM_RUN
                     and exit; the pages prefetched and mapped in KVM ahead (prefault_pages,
                     -1 where KVM cannot or with --no-prefault) and the milliseconds each took
%s%s  -v, --verbose      log VMM diagnostics to stderr (twice: debug)
  -h, --help         show this help

The VMM runs jailed as for wisp run; its root holds the snapshot's files (read-only), its
drives and its socket directories.

Exit status: as for wisp run (0 powered off, 1 error, 2 usage, 3 panic, 4 no KVM, 5 killed by
seccomp, 6 killed by its memory limit, 128+N).
)";

struct RestoreOptions {
  MachineConfig cfg;
  std::string dir, vsock_uds;
  bool timings = false;
  bool huge_pages = false;  // --hugepages
  bool no_prefetch = false;
  bool no_prefault = false;
  std::string working_set;  // the snapshot's working-set file ("" none, or --no-prefetch)
  UniqueFd working_set_fd;  // ... opened before the jail, which then need not expose it
  std::string written_set;  // its written-set file, likewise
  UniqueFd written_set_fd;
  int verbose = 0;
  int ready_fd = -1;
  UniqueFd memory_fd;  // --memory-fd
  VmmJailOptions jail;
  snapshot::SnapshotChain chain;  // the snapshot's state files, read once
  std::vector<BlockSpec> drives;  // --drive: the caller's images for the snapshot's drives
  std::vector<NetOption> nets;    // --net: the TAPs for the snapshot's NICs, in slot order
  std::vector<std::string> taps;  // the TAP each NIC restores on (opened before the jail)
};

// Returns false for --help (printed). Throws UsageError.
bool parse(int argc, char** argv, RestoreOptions* o) {
  uint32_t ready_fd = 0, memory_fd = 0;
  OptionParser p(kCommand);
  p.text("vsock-uds", &o->vsock_uds, true)
      .text("control-socket", &o->cfg.control_socket, true)
      .count("ready-fd", &ready_fd, 3, 1024)
      .count("memory-fd", &memory_fd, 3, 1024)
      .flag("timings", &o->timings)
      .flag("hugepages", &o->huge_pages)
      .flag("no-prefetch", &o->no_prefetch)
      .flag("no-prefault", &o->no_prefault)
      .value("drive", [o](const std::string& v) { o->drives.push_back(parse_drive_spec(v)); })
      .value("net", [o](const std::string& v) {
        try {
          o->nets.push_back(parse_net_option(v));
        } catch (const Error& e) {
          throw UsageError(e.what());
        }
      });
  add_console_options(p, &o->cfg);
  add_verbose_option(p, &o->verbose);
  add_vmm_jail_options(p, &o->jail);
  OptionParser::Result args = p.parse(argc, argv);
  if (args.help) {
    std::printf(kUsage, kJailOptionsHelp, kVmmJailOptionsHelp);
    return false;
  }
  if (args.operands.size() != 1 || !args.rest.empty())
    throw UsageError("expected one snapshot directory");
  o->dir = canonical_path(args.operands[0]);
  if (ready_fd) o->ready_fd = static_cast<int>(ready_fd);
  if (memory_fd) {
    if (memory_fd == ready_fd) throw UsageError("--memory-fd and --ready-fd are the same");
    struct stat st;
    if (::fstat(static_cast<int>(memory_fd), &st) != 0 || !S_ISREG(st.st_mode))
      throw UsageError("--memory-fd " + std::to_string(memory_fd) + ": not an open regular file");
    o->memory_fd = UniqueFd(static_cast<int>(memory_fd));
  }
  return true;
}

// The restored machine's devices are the snapshot's; the clone only brings its own socket.
void configure_devices(const RestoreOptions& o, const snapshot::LoadedSnapshot& snap,
                       MachineConfig* cfg) {
  cfg->devices.clear();  // the jail's view of them (jail_for) is replaced by the snapshot's
  bool has_vsock = false;
  size_t nic = 0;
  for (const VirtioSlotState& slot : snap.state.virtio) {
    cfg->devices.push_back(slot.spec);
    // The TAP opened before the jail (open_taps), which NetKind::create takes by this name.
    if (auto* net = std::get_if<NetSpec>(&cfg->devices.back())) {
      if (nic >= o.taps.size()) throw Error(o.dir + ": the snapshot changed while it was read");
      net->tap_name = o.taps[nic++];
    }
    if (auto* vsock = std::get_if<VsockSpec>(&cfg->devices.back())) {
      if (o.vsock_uds.empty())
        throw Error(
            o.dir +
            ": the snapshot has virtio-vsock: give the clone a socket with --vsock-uds PATH");
      vsock->uds_path = o.vsock_uds;
      validate_vsock_config(*vsock);
      has_vsock = true;
    }
  }
  if (!has_vsock && !o.vsock_uds.empty())
    throw Error(o.dir + ": --vsock-uds given but the snapshot has no virtio-vsock device");
  if (!cfg->control_socket.empty()) cfg->control_service = machine_control(o.dir, snap.id);
}

// The manager (wisp invoke) times the restore by this line; the vCPUs start next.
void report_ready(int fd, uint64_t t0_ns, uint64_t loaded_ns, uint64_t ready_ns, double jail_ms) {
  std::string line = ready_line(t0_ns, loaded_ns, ready_ns, jail_ms);
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    LOG_WARN("--ready-fd: write failed");
  ::close(fd);
}

// The working-set file, opened before the jail (one file fewer to bind into its root).
UniqueFd open_working_set(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw_errno(path);
  return fd;
}

// The TAP of each of the snapshot's NICs (`in.nets`): the caller's --net, else the one the
// snapshot was taken on. Opened here, as root, before the jail, whose network namespace and
// /dev hold none (provide_tap_fd); their descriptors are returned for the jail to keep.
std::vector<int> open_taps(RestoreOptions& o, const std::vector<NetSpec>& nets) {
  if (!o.nets.empty() && o.nets.size() != nets.size())
    throw Error(o.dir + ": --net given " + std::to_string(o.nets.size()) +
                " time(s), the snapshot has " + std::to_string(nets.size()) + " NIC(s)");
  for (size_t i = 0; i < nets.size(); ++i) {
    const std::string nic = o.dir + ": the snapshot's NIC eth" + std::to_string(i);
    std::string name = nets[i].tap_name;
    if (!o.nets.empty()) {
      const NetSpec& given = o.nets[i].spec;
      if (given.mac != kDefaultNetMac && given.mac != nets[i].mac)
        throw Error(nic + " has MAC " + format_mac(nets[i].mac) + ", --net says " +
                    format_mac(given.mac) + " (a restored guest keeps the MAC it read at boot)");
      name = given.tap_name;
    }
    try {
      provide_tap_fd(name, open_tap(name));
    } catch (const Error& e) {
      throw Error(nic + ": " + e.what());
    }
    o.taps.push_back(name);
  }
  return provided_tap_fds();
}

// The jail of a restore: the snapshot's files (its chain, read already: a diff names its
// parent), its drives, the clone's sockets.
jail::JailConfig jail_for(RestoreOptions& o) {
  snapshot::SnapshotInputs in = snapshot::snapshot_inputs(o.chain);
  std::vector<int> keep = open_taps(o, in.nets);
  keep.push_back(o.ready_fd);
  if (o.chain.base_memory) keep.push_back(o.chain.base_memory.get());
  if (!o.no_prefetch && !in.working_set.empty()) {
    o.working_set = in.working_set;
    o.working_set_fd = open_working_set(o.working_set);
    keep.push_back(o.working_set_fd.get());
    if (!in.written_set.empty()) {
      o.written_set = in.written_set;
      o.written_set_fd = open_working_set(o.written_set);
      keep.push_back(o.written_set_fd.get());
    }
  }
  if (!o.jail.flags.jail) return vmm_jail_config(o.jail, &o.cfg, {}, keep);
  o.cfg.mem_bytes = in.mem_bytes;
  o.cfg.vcpus = in.vcpus;
  o.cfg.devices.assign(in.drives.begin(), in.drives.end());
  if (!o.vsock_uds.empty()) {
    o.vsock_uds = canonical_path(o.vsock_uds);
    VsockSpec vsock;
    vsock.uds_path = o.vsock_uds;
    o.cfg.devices.push_back(vsock);
  }
  return vmm_jail_config(o.jail, &o.cfg, in.files, keep);
}

struct RestoreTimes {
  uint64_t kvm_ns = 0, loaded_ns = 0, ready_ns = 0;
  PrefetchResult prefetch;
  std::optional<PreFaultResult> prefault;  // none: not pre-faulted (KVM cannot, --no-prefault)
};

void print_timings(const RestoreTimes& t, const RunResult& r, uint64_t t0_ns, double jail_ms) {
  auto ms = [t0_ns](uint64_t ns) { return static_cast<double>(ns - t0_ns) / 1e6; };
  std::fprintf(stderr,
               "{\"jail_ms\":%.3f,\"kvm_open_ms\":%.3f,\"snapshot_loaded_ms\":%.3f,"
               "\"restored_ms\":%.3f,\"first_kvm_run_ms\":%.3f,\"exit_ms\":%.3f,"
               "\"prefetch_pages\":%" PRIu64 ",\"prefetch_ms\":%.3f,\"prefault_pages\":%" PRId64
               ",\"prefault_ms\":%.3f,\"stop\":\"%s\"}\n",
               jail_ms, ms(t.kvm_ns), ms(t.loaded_ns), ms(t.ready_ns),
               static_cast<double>(r.first_run_us) / 1000.0,
               static_cast<double>(r.exit_us) / 1000.0, t.prefetch.pages,
               t.prefetch.readahead_ms + t.prefetch.populate_ms,
               t.prefault ? static_cast<int64_t>(t.prefault->pages) : int64_t{-1},
               t.prefault ? t.prefault->ms : 0.0, stop_reason_name(r.reason));
}

// The clone, inside the jail: snapshot read and machine rebuilt, privileges dropped, run.
int restore_vm(RestoreOptions& o, jail::Confinement& confinement, uint64_t t0_ns) {
  RunResult r;
  RestoreTimes t;
  try {
    Kvm kvm = Kvm::open(dev_kvm_path());
    t.kvm_ns = now_ns();
    PageRanges ranges;  // the working set's guest-physical pages, for the pre-fault
    const bool pre_fault = !o.no_prefault && kvm.has_pre_fault_memory();
    snapshot::LoadedSnapshot snap = snapshot::load_machine_snapshot(
        std::move(o.chain),
        [&](uint32_t vcpus, CpuModel model) { return guest_cpuid(kvm, 0, vcpus, model); });
    // A separate step after the load, so the default mapping stays as the snapshot code makes
    // it; "snapshot loaded" includes the copy, which reads every page: no prefetch then.
    if (o.huge_pages) {
      snap.memory = snap.memory.copy_to_huge_pages();
    } else if (o.working_set_fd) {
      // The recorded working set loaded before the vCPUs run; a corrupt one fails the
      // restore, naming the file.
      // With the pages a call will write made private copies: the guest's first touch of
      // each then maps it writable, instead of a read fault and a write fault later.
      t.prefetch = prefetch_working_set(
          o.working_set_fd.get(), o.working_set, snap.memory, &ranges,
          /*populate=*/!pre_fault, o.written_set_fd ? o.written_set_fd.get() : -1, o.written_set);
    }
    t.loaded_ns = now_ns();
    configure_devices(o, snap, &o.cfg);
    confine_threads(confinement, &o.cfg);
    auto machine = Machine::restore(o.cfg, snap.state, std::move(snap.memory), kvm, t0_ns);
    // After the written set's copies, so those pages are mapped writable.
    if (pre_fault) t.prefault = pre_fault_working_set(*machine, ranges);
    confinement.drop_privileges();
    t.ready_ns = now_ns();
    if (o.ready_fd >= 0)
      report_ready(o.ready_fd, t0_ns, t.loaded_ns, t.ready_ns, confinement.jail_ms());
    LOG_INFO("restored %s (%u layer(s))", o.dir.c_str(), snap.layers);
    r = machine->run();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
    return kExitError;
  }
  if (o.timings) print_timings(t, r, t0_ns, confinement.jail_ms());
  return exit_code_for(r);
}

}  // namespace

std::string ready_line(uint64_t t0_ns, uint64_t loaded_ns, uint64_t ready_ns, double jail_ms) {
  char line[128];
  snprintf(line, sizeof(line), "ready %.3f %.3f %.3f\n",
           static_cast<double>(loaded_ns - t0_ns) / 1e6,
           static_cast<double>(ready_ns - t0_ns) / 1e6, jail_ms);
  return line;
}

int restore_command(int argc, char** argv, uint64_t t0_ns) {
  RestoreOptions o;
  try {
    if (!parse(argc, argv, &o)) return kExitOk;
  } catch (const UsageError& e) {
    return usage_error(kCommand, e.what());
  }
  apply_verbosity(o.verbose);
  if (int rc = check_kvm_usable()) return rc;
  warn_debug_jail_flags(o.jail.flags);
  try {
    enter_vm_netns(&o.jail);
    // Once, before the jail: it decides what the jail exposes, and the VMM (a fork of this
    // process) goes on with it.
    o.chain = snapshot::read_snapshot_chain(o.dir, o.drives);
    o.chain.base_memory = std::move(o.memory_fd);
    jail::JailConfig jail = jail_for(o);
    return jail::run_jailed(jail, [&](jail::Confinement& c) { return restore_vm(o, c, t0_ns); });
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
    return kExitError;
  }
}

}  // namespace wisp
