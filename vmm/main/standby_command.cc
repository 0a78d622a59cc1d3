#include "vmm/main/standby_command.h"

#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>

#include "api/standby_order.h"
#include "api/vm_limits.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/exit_codes.h"
#include "base/file_io.h"
#include "base/log.h"
#include "base/options.h"
#include "snapshot/machine_snapshot.h"
#include "vmm/jail/jail.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/machine.h"
#include "vmm/main/jail_setup.h"
#include "vmm/main/machine_control.h"
#include "vmm/main/restore_command.h"
#include "vmm/main/standby_boot.h"
#include "vmm/main/vmm_process.h"
#include "vmm/main/working_set_prefetch.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/virtio/block/block_backend.h"
#include "vmm/virtio/vsock/vsock_muxer.h"

namespace wisp {
namespace {

constexpr const char* kCommand = "wisp-vmm standby";

constexpr const char* kUsage = R"(Usage: wisp-vmm standby --order-fd N [OPTIONS]

A VMM that jails itself at once and then waits for one order on the SOCK_SEQPACKET socket N:
restore the snapshot whose files come with the order, or boot the kernel (initrd, drives) that
come with it (api/standby_order.h). It reports "standby" there once jailed, and "ready
LOADED_MS READY_MS JAIL_MS" once the machine is built (counted from the order), then runs it as
'wisp-vmm restore' or 'wisp-vmm run' does. The manager's pool of pre-jailed VMMs spawns it; it
opens no guest file itself.

Its limits (cgroup memory.max, thread count) are fixed before the machine is known: a standby
belongs to a size class, --mem and --vcpus, and refuses a machine larger than its class.

Options:
  --order-fd N       the order socket (3 to 1024); required
  --mem SIZE         the largest guest RAM it restores or boots (default 512 MiB)
  --vcpus N          the most vCPUs it restores or boots (default 2)
  --vsock-uds PATH   the clone's virtio-vsock Unix socket (required for a snapshot with vsock)
  --control-socket PATH
                     listen for control commands, as for restore
  --ready-fd N       also write the ready line to descriptor N (3 to 1024)
  --console MODE     stdio (default), none or FILE, as for wisp run
  --console-max-bytes SIZE
                     cap of a console FILE
%s%s  -v, --verbose      log VMM diagnostics to stderr (twice: debug)
  -h, --help         show this help

Exit status: as for restore; 0 also when the order socket closes before an order came.
)";

struct StandbyOptions {
  MachineConfig cfg;
  std::string vsock_uds;
  int verbose = 0;
  int order_fd = -1;
  int ready_fd = -1;
  VmmJailOptions jail;
};

bool parse(int argc, char** argv, StandbyOptions* o) {
  uint32_t order_fd = 0, ready_fd = 0;
  o->cfg.mem_bytes = 512ull << 20;
  o->cfg.vcpus = 2;
  OptionParser p(kCommand);
  p.count("order-fd", &order_fd, 3, 1024)
      .count("ready-fd", &ready_fd, 3, 1024)
      .size("mem", &o->cfg.mem_bytes, 1ull << 20, kMinGuestMemBytes, kMaxGuestMemBytes)
      .count("vcpus", &o->cfg.vcpus, 1, kMaxGuestVcpus)
      .text("vsock-uds", &o->vsock_uds)
      .text("control-socket", &o->cfg.control_socket);
  add_console_options(p, &o->cfg);
  add_verbose_option(p, &o->verbose);
  add_vmm_jail_options(p, &o->jail);
  OptionParser::Result args = p.parse(argc, argv);
  if (args.help) {
    std::printf(kUsage, kJailOptionsHelp, kVmmJailOptionsHelp);
    return false;
  }
  if (!args.operands.empty() || !args.rest.empty()) throw UsageError("expected no operand");
  if (!order_fd) throw UsageError("--order-fd N is required");
  o->order_fd = static_cast<int>(order_fd);
  if (ready_fd) o->ready_fd = static_cast<int>(ready_fd);
  if (o->ready_fd == o->order_fd) throw UsageError("--ready-fd and --order-fd are the same");
  return true;
}

// The jail of a standby: its size class's limits, its sockets' directories and /dev/kvm. No
// snapshot file: those arrive as descriptors.
jail::JailConfig jail_for(StandbyOptions& o) {
  if (!o.vsock_uds.empty()) {
    o.vsock_uds = canonical_path(o.vsock_uds);
    VsockSpec vsock;
    vsock.uds_path = o.vsock_uds;
    o.cfg.devices.push_back(vsock);
  }
  return vmm_jail_config(o.jail, &o.cfg, {}, {o.order_fd, o.ready_fd});
}

// The ordered snapshot's machine, checked against the class, with the clone's own sockets and
// the drives the order brought (`drives`, in slot order: the jail holds no path to them).
void configure_devices(const StandbyOptions& o, const snapshot::LoadedSnapshot& snap,
                       const standby::RestoreOrder& order, std::vector<UniqueFd> drives,
                       MachineConfig* cfg) {
  const MachineState& m = snap.state;
  if (m.mem_bytes > o.cfg.mem_bytes || m.vcpus.size() > o.cfg.vcpus)
    throw Error("the snapshot's machine (" + format_size(m.mem_bytes) + ", " +
                std::to_string(m.vcpus.size()) + " vCPUs) is larger than this standby's class (" +
                format_size(o.cfg.mem_bytes) + ", " + std::to_string(o.cfg.vcpus) + " vCPUs)");
  cfg->mem_bytes = m.mem_bytes;
  cfg->vcpus = static_cast<uint32_t>(m.vcpus.size());
  cfg->devices.clear();
  bool has_vsock = false;
  size_t drive = 0;
  for (const VirtioSlotState& slot : m.virtio) {
    cfg->devices.push_back(slot.spec);
    if (auto* spec = std::get_if<BlockSpec>(&cfg->devices.back())) {
      if (drive >= drives.size())
        throw Error("the snapshot has more drives than the order's " +
                    std::to_string(drives.size()));
      if (order.drive_read_only[drive] != spec->read_only)
        throw Error("drive " + std::to_string(drive) + " (" + spec->path + ") is " +
                    (spec->read_only ? "read-only" : "writable") +
                    " in the snapshot, the order says otherwise");
      provide_drive_fd(spec->path, std::move(drives[drive++]));
    }
    // Its jail's network namespace holds no TAP and an order brings none: the manager
    // restores a snapshot with a NIC through `wisp-vmm restore`, which opens the TAP first.
    if (const auto* net = std::get_if<NetSpec>(&cfg->devices.back()))
      throw Error("the snapshot has virtio-net (TAP " + net->tap_name +
                  "): a standby VMM cannot open a TAP; restore it with wisp-vmm restore");
    if (auto* vsock = std::get_if<VsockSpec>(&cfg->devices.back())) {
      if (o.vsock_uds.empty())
        throw Error("the snapshot has virtio-vsock: the standby needs --vsock-uds PATH");
      vsock->uds_path = o.vsock_uds;
      validate_vsock_config(*vsock);
      has_vsock = true;
    }
  }
  if (!has_vsock && !o.vsock_uds.empty())
    throw Error("--vsock-uds given but the snapshot has no virtio-vsock device");
  if (drive != drives.size())
    throw Error("the order brought " + std::to_string(drives.size()) +
                " drive(s), the snapshot has " + std::to_string(drive));
}

// The order's descriptors after the layers' files: its drives, in slot order.
std::vector<UniqueFd> drives_of(const standby::RestoreOrder& order, std::vector<UniqueFd>& fds) {
  std::vector<UniqueFd> drives;
  size_t end = fds.size() - (order.working_set ? 1 : 0) - (order.written_set ? 1 : 0);
  for (size_t i = 2 * size_t{order.layers}; i < end; ++i) drives.push_back(std::move(fds[i]));
  return drives;
}

std::vector<snapshot::SnapshotLayerFds> layers_of(const standby::RestoreOrder& order,
                                                  std::vector<UniqueFd>& fds) {
  std::vector<snapshot::SnapshotLayerFds> layers;
  for (uint32_t i = 0; i < order.layers; ++i)
    layers.push_back({std::move(fds[2 * i]), std::move(fds[2 * i + 1])});
  return layers;
}

// A built machine and the line that reports it.
struct Ordered {
  std::unique_ptr<Machine> machine;
  std::string ready_line;
};

// `pre_fault`: Kvm::has_pre_fault_memory(), asked while standing by.
Ordered restore_on_order(StandbyOptions& o, const standby::RestoreOrder& order,
                         std::vector<UniqueFd>& fds, const Kvm& kvm, Vm vm, bool pre_fault,
                         jail::Confinement& confinement, uint64_t t0) {
  const std::string name = "standby order (" + order.source_dir + ")";
  snapshot::LoadedSnapshot snap = snapshot::load_machine_snapshot(
      layers_of(order, fds),
      [&](uint32_t vcpus, CpuModel model) { return guest_cpuid(kvm, 0, vcpus, model); }, name);
  PageRanges ranges;  // the working set's guest-physical pages, mapped in KVM once built
  if (order.working_set) {
    const size_t ws = fds.size() - (order.written_set ? 2 : 1);
    // The pages a call will write made private copies too (restore_command.cc does the same).
    prefetch_working_set(fds[ws].get(), order.source_dir + "/working-set", snap.memory, &ranges,
                         /*populate=*/!pre_fault, order.written_set ? fds.back().get() : -1,
                         order.source_dir + "/written-set");
  }
  uint64_t loaded = now_ns();
  configure_devices(o, snap, order, drives_of(order, fds), &o.cfg);
  if (!o.cfg.control_socket.empty())
    o.cfg.control_service = machine_control(order.source_dir, snap.id);
  confine_threads(confinement, &o.cfg);
  Ordered out;
  out.machine = Machine::restore(o.cfg, snap.state, std::move(snap.memory), kvm, t0, std::move(vm));
  if (pre_fault) pre_fault_working_set(*out.machine, ranges);
  out.ready_line = ready_line(t0, loaded, now_ns(), confinement.jail_ms());
  LOG_INFO("restored %s (%u layer(s)) on order", order.source_dir.c_str(), snap.layers);
  return out;
}

// As `wisp-vmm run` boots: `fds` (the kernel's, the initrd's) stay open until the machine is
// built.
Ordered boot_on_order(StandbyOptions& o, const standby::BootOrder& order,
                      std::vector<UniqueFd>& fds, const Kvm& kvm, Vm vm,
                      jail::Confinement& confinement, uint64_t t0) {
  configure_boot(order, fds, o.vsock_uds, &o.cfg);
  if (!o.cfg.control_socket.empty()) o.cfg.control_service = machine_control();
  confine_threads(confinement, &o.cfg);
  Ordered out;
  out.machine = Machine::create(o.cfg, kvm, t0, std::move(vm));
  uint64_t built = now_ns();
  out.ready_line = ready_line(t0, built, built, confinement.jail_ms());
  LOG_INFO("booting on order (%u vCPU, %u MiB)", order.vcpus, order.mem_mib);
  return out;
}

void send_line(int fd, const std::string& line) {
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    LOG_WARN("--ready-fd: write failed");
}

// Inside the jail: /dev/kvm opened and privileges dropped, then the order awaited and run.
int stand_by(StandbyOptions& o, jail::Confinement& confinement) {
  RunResult r;
  try {
    Kvm kvm = Kvm::open(dev_kvm_path());
    // The guest memory comes with the order, after the jail has detached /proc: its pagemap
    // (stats, diff snapshots such as Sandbox.snapshot's) is opened now.
    GuestMemory::preopen_pagemap();
    confinement.drop_privileges();
    // The KVM VM is made now, while standing by, with its platform (irqchip, PIT) and vCPU 0
    // (every machine has one): the kernel's part of making them (its MMU, its worker threads,
    // the vCPU's state) is off the order's path.
    Vm vm = kvm.create_vm();
    prepare_platform(vm);
    vm.create_vcpu0_ahead(kvm.vcpu_mmap_size());
    const bool pre_fault = kvm.has_pre_fault_memory();
    standby::send_message(o.order_fd, standby::kStandbyLine);
    standby::ReceivedOrder order;
    try {
      order = standby::receive_order(o.order_fd);
    } catch (const standby::OrderCancelled& e) {
      LOG_INFO("%s", e.what());
      return kExitOk;
    }
    // The VM's times count from the order, as a restore's count from its process start.
    uint64_t t0 = now_ns();
    Ordered done =
        std::holds_alternative<standby::BootOrder>(order.order)
            ? boot_on_order(o, std::get<standby::BootOrder>(order.order), order.fds, kvm,
                            std::move(vm), confinement, t0)
            : restore_on_order(o, std::get<standby::RestoreOrder>(order.order), order.fds, kvm,
                               std::move(vm), pre_fault, confinement, t0);
    standby::send_message(o.order_fd, done.ready_line);
    if (o.ready_fd >= 0) send_line(o.ready_fd, done.ready_line);
    r = done.machine->run();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
    return kExitError;
  }
  return exit_code_for(r);
}

}  // namespace

int standby_command(int argc, char** argv, uint64_t /*t0_ns*/) {
  StandbyOptions o;
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
    jail::JailConfig jail = jail_for(o);
    return jail::run_jailed(jail, [&](jail::Confinement& c) { return stand_by(o, c); });
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
    return kExitError;
  }
}

}  // namespace wisp
