#include "manager/vm_spec.h"

#include <sys/stat.h>

#include "base/error.h"
#include "base/self_exe.h"
#include "manager/host_net/address_plan.h"
#include "manager/host_net/egress_rule.h"

namespace wisp::manager {
namespace {

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string default_kernel() { return self_dir() + "/../guest/vmlinux"; }

std::string default_agent_initrd() { return self_dir() + "/../guest/agent-initramfs.cpio.gz"; }

std::string effective_initrd(const VmSpec& spec) {
  return spec.initrd.empty() && spec.rootfs.empty() ? default_agent_initrd() : spec.initrd;
}

void check_guest_files(const VmSpec& spec) {
  if (!spec.rootfs.empty() && !exists(spec.rootfs))
    throw Error("the root filesystem image " + spec.rootfs +
                " is missing: build it with 'make rootfs'");
  std::string initrd = effective_initrd(spec);
  if (!initrd.empty() && !exists(initrd))
    throw Error("the agent guest initramfs " + initrd +
                " is missing: build it with 'make guest' or pass --initrd");
  if (!spec.kernel.empty() && !exists(spec.kernel))
    throw Error("the kernel " + spec.kernel + " is missing: build the guest with 'make guest'");
}

std::string describe_guest(const VmSpec& spec) {
  return (spec.kernel.empty() ? std::string("default kernel") : spec.kernel) + ", " +
         (spec.rootfs.empty() ? "initrd " + effective_initrd(spec) : "rootfs " + spec.rootfs);
}

std::string vmm_cmdline(const VmSpec& spec) {
  // quiet: each console byte is a VM exit, and nobody reads this console by default.
  std::string cmdline =
      spec.raw_cmdline ? spec.cmdline : "quiet" + (spec.cmdline.empty() ? "" : " " + spec.cmdline);
  // The agent writes the guest's /etc/resolv.conf from it (agent/guest_net_config.h).
  if (!spec.network.dns.empty())
    cmdline += (cmdline.empty() ? "" : " ") + std::string("wisp.dns=") + spec.network.dns;
  return cmdline;
}

std::unique_ptr<host_net::VmNetwork> make_vm_network(const VmNetworkSpec& spec) {
  if (!spec.own) return nullptr;
  std::vector<host_net::EgressRule> allow;
  for (const std::string& a : spec.allow) allow.push_back(host_net::parse_egress_rule(a));
  return host_net::VmNetwork::create(allow);
}

std::vector<std::string> vmm_run_args(const VmSpec& spec, const std::string& vsock_uds,
                                      const std::string& control_socket) {
  std::vector<std::string> args = {"run", "--vsock-uds", vsock_uds, "--console", spec.console};
  if (!control_socket.empty()) args.insert(args.end(), {"--control-socket", control_socket});
  if (!spec.kernel.empty()) args.insert(args.end(), {"--kernel", spec.kernel});
  std::string initrd = effective_initrd(spec);
  if (!initrd.empty()) args.insert(args.end(), {"--initrd", initrd});
  if (!spec.rootfs.empty()) args.insert(args.end(), {"--rootfs", spec.rootfs});
  if (spec.mem_bytes) args.insert(args.end(), {"--mem", std::to_string(spec.mem_bytes >> 20)});
  if (spec.vcpus) args.insert(args.end(), {"--vcpus", std::to_string(spec.vcpus)});
  for (const std::string& d : spec.drives) args.insert(args.end(), {"--drive", d});
  if (spec.network.own)
    args.insert(args.end(),
                {"--net", host_net::guest_net_option() +
                              (spec.network.limits.empty() ? "" : "," + spec.network.limits)});
  for (const std::string& n : spec.nets) args.insert(args.end(), {"--net", n});
  if (!spec.rng) args.push_back("--no-rng");
  if (!spec.huge_pages) args.push_back("--no-hugepages");
  if (spec.portable) args.push_back("--portable");
  if (!spec.vsock_cid.empty()) args.insert(args.end(), {"--vsock-cid", spec.vsock_cid});
  std::string cmdline = vmm_cmdline(spec);
  if (spec.raw_cmdline) args.push_back("--raw-cmdline");
  if (!cmdline.empty()) args.insert(args.end(), {"--cmdline", cmdline});
  for (int i = 0; i < spec.verbose; ++i) args.push_back("--verbose");
  if (spec.timings) args.push_back("--timings");
  std::vector<std::string> jail = jail_args(spec.jail);
  args.insert(args.end(), jail.begin(), jail.end());
  return args;
}

}  // namespace wisp::manager
