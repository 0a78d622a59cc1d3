// StandbyVmm's boot order (api/standby_order.h): the spec's guest files opened here and passed
// as descriptors, since the standby's jail holds no path to them. The rest of StandbyVmm is in
// vmm_pool.cc.
#include <fcntl.h>
#include <sys/stat.h>

#include "api/standby_order.h"
#include "base/error.h"
#include "manager/vmm_pool.h"

namespace wisp::manager {
namespace {

// A guest file the order hands over: a regular file, opened without following a symlink at its
// last component (the VMM checks its contents again: it trusts nothing).
UniqueFd open_guest_file(const std::string& path, bool writable, const char* what) {
  UniqueFd fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw_errno(std::string(what) + " " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno(std::string(what) + " " + path);
  if (!S_ISREG(st.st_mode)) throw Error(std::string(what) + " " + path + ": not a regular file");
  return fd;
}

// "PATH[,ro]" (VmSpec::drives, as `wisp run --drive` takes them): the path and the mode.
std::pair<std::string, bool> drive_of(const std::string& spec) {
  bool ro = spec.size() > 3 && spec.compare(spec.size() - 3, 3, ",ro") == 0;
  std::string path = ro ? spec.substr(0, spec.size() - 3) : spec;
  if (path.empty() || path.find(',') != std::string::npos)
    throw Error("drive \"" + spec + "\": expected PATH or PATH,ro");
  return {path, ro};
}

}  // namespace

std::string StandbyVmm::why_not_boot(const VmSpec& spec, const StandbyClass& size,
                                     const JailFlags& jail) {
  if (!spec.mem_bytes || !spec.vcpus) return "the spec leaves its machine size to wisp-vmm";
  if (spec.mem_bytes > size.mem_bytes || spec.vcpus > size.vcpus)
    return "the machine is larger than the pool's class";
  if (spec.mem_bytes % (1ull << 20) != 0) return "guest memory not in whole MiB";
  if (spec.console != "none") return "a console file";
  if (!spec.vsock_cid.empty()) return "a vsock CID of its own";
  if (spec.verbose || spec.timings) return "VMM diagnostics of its own";
  if (jail_args(spec.jail) != jail_args(jail)) return "a jail unlike the pool's";
  if (!spec.nets.empty()) return "a NIC (a standby's jail holds no TAP, an order brings none)";
  if (spec.drives.size() + (spec.rootfs.empty() ? 0 : 1) > standby::kMaxDrives)
    return "more drives than an order carries";
  for (const std::string& d : spec.drives)
    if (d.find(',') != (d.size() > 3 && d.ends_with(",ro") ? d.size() - 3 : std::string::npos))
      return "a drive option an order does not carry (a rate limit)";
  return "";
}

void StandbyVmm::order_boot(const VmSpec& spec) {
  if (!standing_by()) throw Error("the VMM is not standing by (yet)");
  standby::BootOrder order;
  order.mem_mib = static_cast<uint32_t>(spec.mem_bytes >> 20);
  order.vcpus = spec.vcpus;
  order.rng = spec.rng;
  order.huge_pages = spec.huge_pages;
  order.portable = spec.portable;
  order.raw_cmdline = spec.raw_cmdline;
  order.cmdline = vmm_cmdline(spec);
  std::vector<UniqueFd> files;
  files.push_back(
      open_guest_file(spec.kernel.empty() ? default_kernel() : spec.kernel, false, "kernel"));
  std::string initrd = effective_initrd(spec);
  if (!initrd.empty()) {
    files.push_back(open_guest_file(initrd, false, "initrd"));
    order.initrd = true;
  }
  if (!spec.rootfs.empty()) {
    files.push_back(open_guest_file(spec.rootfs, false, "root filesystem image"));
    order.drive_read_only.push_back(true);
    order.rootfs = true;
  }
  for (const std::string& d : spec.drives) {
    auto [path, ro] = drive_of(d);
    files.push_back(open_guest_file(path, !ro, "drive"));
    order.drive_read_only.push_back(ro);
  }
  std::string text = standby::encode_order(order);  // checks sizes and the command line
  std::vector<int> fds;
  for (const UniqueFd& f : files) fds.push_back(f.get());
  send_order(text, fds);
}

void StandbyVmm::send_order(const std::string& text, const std::vector<int>& fds) {
  try {
    standby::send_message(order_.get(), text, fds);
  } catch (const Error& e) {
    throw vm_->failure(e.what());
  }
  stage_ = Stage::kOrdered;
}

}  // namespace wisp::manager
