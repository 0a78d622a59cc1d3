#include "vmm/main/jail_setup.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "vmm/main/vmm_process.h"

namespace wisp {
namespace {

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// The console file exists before the jail mounts it (the VMM truncates it again on open), and
// it belongs to whoever started wisp, not to the VM's uid.
void create_console_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) throw_errno("--console " + path);
  // Owner-only, also when it existed: the guest's output is the VM owner's business.
  if (::fchmod(fd.get(), 0600) != 0) throw_errno("--console " + path);
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

jail::ThreadKind kind_of(ThreadRole role) {
  switch (role) {
    case ThreadRole::kVcpu:
      return jail::ThreadKind::kVcpu;
    case ThreadRole::kControl:
      return jail::ThreadKind::kControl;
    case ThreadRole::kBlock:
      return jail::ThreadKind::kBlock;
    default:
      return jail::ThreadKind::kLoop;
  }
}

// Every host path of `cfg` made canonical: the jail mounts each file at that path, and the
// VMM must open exactly it (no symlink or ".." to resolve through directories it cannot see).
void absolutize(MachineConfig* cfg) {
  auto fix = [](std::string& p) {
    if (p.empty()) return;
    try {
      p = canonical_path(p);
    } catch (const Error&) {
      // Its directory is missing: the jail skips it, and the VMM's open names it as given.
      p = absolute_path(p);
    }
  };
  fix(cfg->kernel_path);
  fix(cfg->initrd_path);
  fix(cfg->control_socket);
  if (cfg->console == MachineConfig::Console::kFile) fix(cfg->console_file);
  for (DeviceSpec& d : cfg->devices) {
    if (auto* drive = std::get_if<BlockSpec>(&d)) fix(drive->path);
    if (auto* vsock = std::get_if<VsockSpec>(&d)) fix(vsock->uds_path);
  }
}

}  // namespace

const char kVmmJailOptionsHelp[] =
    R"(  --jail-dir DIR   the VM's runtime directory: its jail root is made in DIR/root
                   (default: /run/wisp/jail/vm-UID)
  --parent-fd N    the read end of a pipe only the starting process writes to (3 to 1024):
                   when it hangs up (that process died) the VM is killed (the manager's)
  --netns-fd N     a network namespace (an open /proc/PID/ns/net or nsfs file, 3 to 1024)
                   the VMM runs in instead of a new empty one, entered before its TAPs are
                   opened by name; wisp's bare --net makes one per VM (its TAP wisp0, a veth
                   to the host, NAT and the egress allow-list)
)";

void add_vmm_jail_options(OptionParser& parser, VmmJailOptions* options) {
  add_jail_options(parser, &options->flags);
  parser.value("jail-dir", [options](const std::string& v) {
    if (v.empty()) throw UsageError("--jail-dir: expected a directory");
    options->dir = absolute_path(v);
  });
  parser.value("parent-fd", [options](const std::string& v) {
    options->parent_fd = static_cast<int>(parse_count("--parent-fd", v, 3, 1024));
  });
  parser.value("netns-fd", [options](const std::string& v) {
    options->netns_fd = static_cast<int>(parse_count("--netns-fd", v, 3, 1024));
  });
}

void enter_vm_netns(VmmJailOptions* options) {
  if (options->netns_fd < 0) return;
  UniqueFd fd(options->netns_fd);
  options->netns_fd = -1;
  if (::setns(fd.get(), CLONE_NEWNET) != 0)
    throw_errno("--netns-fd " + std::to_string(fd.get()) + ": entering the network namespace");
  options->in_vm_netns = true;
}

jail::JailConfig vmm_jail_config(const VmmJailOptions& options, MachineConfig* cfg_in,
                                 const std::vector<std::string>& extra_files,
                                 std::vector<int> keep_fds) {
  jail::JailConfig j;
  absolutize(cfg_in);
  const MachineConfig& cfg = *cfg_in;
  j.enabled = options.flags.jail;
  j.cgroup = options.flags.cgroup;
  if (options.flags.uid_first) j.uids = {*options.flags.uid_first, *options.flags.uid_last};
  j.cpu_quota_percent = options.flags.cpu_quota_percent;
  j.memory_max = options.flags.memory_max;
  j.dir = options.dir;
  const char* log_all = std::getenv("WISP_SECCOMP_LOG_ALL");
  if (log_all && std::strcmp(log_all, "1") == 0) j.seccomp = jail::SeccompMode::kLogAll;
  j.guest_mem_bytes = cfg.mem_bytes;
  j.vcpus = cfg.vcpus;
  j.keep_fds = std::move(keep_fds);
  j.parent_fd = options.parent_fd;
  j.new_netns = !options.in_vm_netns;
  if (!j.enabled) return j;

  auto add_file = [&j](const std::string& path, bool writable) {
    if (!path.empty()) j.exposed.push_back({path, writable, false, false});
  };
  add_file(cfg.kernel_path, false);
  add_file(cfg.initrd_path, false);
  for (const std::string& f : extra_files) add_file(f, false);
  // The largest file the VMM writes: a snapshot's memory file, or a writable drive.
  j.max_file_bytes = cfg.mem_bytes + (64ull << 20);
  for (const DeviceSpec& d : cfg.devices) {
    if (const auto* drive = std::get_if<BlockSpec>(&d)) {
      ++j.io_threads;  // its block I/O thread (vmm/virtio/block/block_worker)
      add_file(drive->path, !drive->read_only);
      if (!drive->read_only) j.max_file_bytes = std::max(j.max_file_bytes, file_size(drive->path));
    } else if (const auto* vsock = std::get_if<VsockSpec>(&d)) {
      j.exposed.push_back({dir_of(vsock->uds_path), true, true, false});
    }
  }
  if (!cfg.control_socket.empty())
    j.exposed.push_back({dir_of(cfg.control_socket), true, true, false});
  if (cfg.console == MachineConfig::Console::kFile) {
    create_console_file(cfg.console_file);
    add_file(cfg.console_file, true);
  }
  j.exposed.push_back({absolute_path(dev_kvm_path()), true, false, true});
  return j;
}

void confine_threads(jail::Confinement& confinement, MachineConfig* cfg) {
  if (!confinement.active()) return;
  cfg->on_thread_start = [&confinement](ThreadRole role) {
    confinement.enter_thread(kind_of(role));
  };
}

}  // namespace wisp
