// `wisp run` (and `wisp snapshot restore`, through exec_vmm): the VMM is its own executable,
// wisp-vmm, next to this one. wisp replaces itself with it, so the VM keeps this process's id,
// terminal, signals and exit status, exactly as when wisp ran the VMM itself.
//
// A bare `--net` (and its `--allow`s) is wisp's, not wisp-vmm's: wisp makes the VM's own
// network (manager/host_net) and hands wisp-vmm its namespace (--netns-fd) and TAP. Once wisp
// has become wisp-vmm the namespace is held by the VMM alone, so it goes, with its veth, when
// the VM ends: nothing is left for anyone to remove.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/exit_codes.h"
#include "base/options.h"
#include "cli/commands.h"
#include "manager/host_net/address_plan.h"
#include "manager/host_net/egress_rule.h"
#include "manager/vm_spec.h"
#include "manager/vmm_child.h"

namespace wisp::cli {
namespace {

int exec_vmm_args(const char* command, const std::vector<std::string>& given, uint64_t t0_ns) {
  std::string exe = manager::vmm_executable();
  std::vector<std::string> all = given;
  std::vector<char*> args = {exe.data(), const_cast<char*>(command)};
  for (std::string& a : all) args.push_back(a.data());
  args.push_back(nullptr);
  // wisp-vmm's --timings count from this process's start, not from the exec.
  std::string start = std::to_string(t0_ns);
  setenv("WISP_START_NS", start.c_str(), 1);
  ::execv(exe.c_str(), args.data());
  std::fprintf(stderr, "wisp: cannot run the VMM %s: %s (wisp-vmm belongs next to wisp)\n",
               exe.c_str(), std::strerror(errno));
  return kExitError;
}

// Takes the bare --net and the --allow's out of `args` into `net`. Throws UsageError.
std::vector<std::string> take_own_network(const std::vector<std::string>& args,
                                          manager::VmNetworkSpec* net) {
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      rest.insert(rest.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    if (a == "--net" && (i + 1 == args.size() || !args[i + 1].starts_with("tap="))) {
      net->own = true;
    } else if (a == "--allow" || a.starts_with("--allow=")) {
      if (a == "--allow" && i + 1 == args.size()) throw UsageError("--allow: missing its value");
      std::string v = a == "--allow" ? args[++i] : a.substr(8);
      net->allow.push_back(host_net::to_string(host_net::parse_egress_rule(v)));
    } else {
      rest.push_back(a);
    }
  }
  if (!net->allow.empty() && !net->own)
    throw UsageError("--allow needs a bare --net (the VM's own network, where it is enforced)");
  return rest;
}

}  // namespace

int run_command(int argc, char** argv, uint64_t t0_ns) {
  std::vector<std::string> args(argv + 1, argv + argc);
  manager::VmNetworkSpec net;
  try {
    args = take_own_network(args, &net);
  } catch (const UsageError& e) {
    return usage_error("wisp run", e.what());
  }
  std::unique_ptr<host_net::VmNetwork> network;
  if (net.own) {
    try {
      network = manager::make_vm_network(net);
      // Inherited across the exec (no close-on-exec): the VMM enters it and closes it.
      int fd = ::fcntl(network->netns_fd(), F_DUPFD, 3);
      if (fd < 0) throw_errno("passing the VM's network namespace on");
      std::vector<std::string> own = {"--net", host_net::guest_net_option(), "--netns-fd",
                                      std::to_string(fd)};
      args.insert(args.begin(), own.begin(), own.end());
    } catch (const Error& e) {
      std::fprintf(stderr, "wisp: %s\n", e.what());
      return kExitError;
    }
  }
  return exec_vmm_args("run", args, t0_ns);
}

int exec_vmm(const char* command, int argc, char** argv, uint64_t t0_ns) {
  return exec_vmm_args(command, std::vector<std::string>(argv + 1, argv + argc), t0_ns);
}

}  // namespace wisp::cli
