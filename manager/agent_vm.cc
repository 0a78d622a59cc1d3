#include "manager/agent_vm.h"

#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace wisp::manager {
namespace {

std::string control_path(const RuntimeDir& dir, bool control) {
  return control ? dir.file("control.sock") : "";
}

// The VM's jail root lives in its runtime directory, and goes with it.
void add_jail_dir(const RuntimeDir& dir, std::vector<std::string>* args) {
  args->insert(args->end(), {"--jail-dir", dir.path()});
}

}  // namespace

AgentVm::AgentVm(const char* prefix,
                 const std::function<std::vector<std::string>(const RuntimeDir&)>& args,
                 bool ready_pipe, int order_fd, std::unique_ptr<host_net::VmNetwork> network)
    : dir_(prefix),
      vmm_(args(dir_), dir_.file("vmm.log"), ready_pipe, order_fd, std::move(network)) {}

std::unique_ptr<AgentVm> AgentVm::standby(const std::vector<std::string>& args, bool control,
                                          int order_fd, const char* prefix) {
  auto all = [&](const RuntimeDir& dir) {
    std::vector<std::string> a = {"standby", "--vsock-uds", dir.file("vsock.sock"), "--console",
                                  "none"};
    if (control) a.insert(a.end(), {"--control-socket", control_path(dir, control)});
    a.insert(a.end(), args.begin(), args.end());
    add_jail_dir(dir, &a);
    return a;
  };
  return std::unique_ptr<AgentVm>(new AgentVm(prefix, all, false, order_fd));
}

void AgentVm::note_ready(const std::string& line) { jail_ms_ = ready_line_jail_ms(line); }

std::unique_ptr<AgentVm> AgentVm::boot(const VmSpec& spec, bool control, const char* prefix) {
  auto args = [&](const RuntimeDir& dir) {
    std::vector<std::string> a =
        vmm_run_args(spec, dir.file("vsock.sock"), control_path(dir, control));
    add_jail_dir(dir, &a);
    return a;
  };
  return std::unique_ptr<AgentVm>(
      new AgentVm(prefix, args, false, -1, make_vm_network(spec.network)));
}

std::unique_ptr<AgentVm> AgentVm::restore(const std::string& snapshot_dir,
                                          const std::vector<std::string>& drives, const VmNet& net,
                                          bool control, std::chrono::milliseconds timeout,
                                          const JailFlags& jail, Cancellation* cancellation,
                                          Prefetch prefetch) {
  auto args = [&](const RuntimeDir& dir) {
    return vmm_restore_args(snapshot_dir, drives, net, dir.file("vsock.sock"),
                            control_path(dir, control), jail, dir.path(), prefetch);
  };
  try {
    std::unique_ptr<AgentVm> vm(
        new AgentVm("wisp-invoke", args, true, -1, make_vm_network(clone_network(net))));
    Cancellation::Watch watch(cancellation, vm->vmm());
    vm->note_ready(vm->vmm().wait_ready(timeout));
    return vm;
  } catch (const Error& e) {
    throw VmFailed(e.what());  // wait_ready's message already carries the log
  }
}

std::vector<std::string> vmm_restore_args(const std::string& snapshot_dir,
                                          const std::vector<std::string>& drives, const VmNet& net,
                                          const std::string& vsock_uds,
                                          const std::string& control_socket, const JailFlags& jail,
                                          const std::string& jail_dir, Prefetch prefetch) {
  std::vector<std::string> a = {"restore", snapshot_dir, "--vsock-uds",
                                vsock_uds, "--console",  "none"};
  if (prefetch == Prefetch::kNone) a.push_back("--no-prefetch");
  if (prefetch == Prefetch::kNoPrefault) a.push_back("--no-prefault");
  if (!control_socket.empty()) a.insert(a.end(), {"--control-socket", control_socket});
  for (const std::string& d : drives) a.insert(a.end(), {"--drive", d});
  std::vector<std::string> n = vmm_restore_net_args(net);
  a.insert(a.end(), n.begin(), n.end());
  std::vector<std::string> j = jail_args(jail);
  a.insert(a.end(), j.begin(), j.end());
  a.insert(a.end(), {"--jail-dir", jail_dir});
  return a;
}

double ready_line_jail_ms(const std::string& ready_line) {
  double loaded = 0, restored = 0, jail_ms = 0;
  if (std::sscanf(ready_line.c_str(), "ready %lf %lf %lf", &loaded, &restored, &jail_ms) != 3)
    return 0;
  return jail_ms;
}

std::unique_ptr<client::AgentClient> AgentVm::connect_agent(std::chrono::milliseconds deadline,
                                                            bool confirm,
                                                            std::function<bool()> keep_trying) {
  client::ConnectOptions co;
  co.uds_path = dir_.file("vsock.sock");
  co.deadline = deadline;
  co.confirm = confirm;
  co.keep_trying = [this, keep_trying] { return vmm_.alive() && (!keep_trying || keep_trying()); };
  return client::AgentClient::connect(co);
}

std::unique_ptr<client::AgentClient> AgentVm::connect_agent_with(
    std::chrono::milliseconds deadline,
    const std::function<void(client::AgentClient&)>& first_calls) {
  client::ConnectOptions co;
  co.uds_path = dir_.file("vsock.sock");
  co.deadline = deadline;
  co.keep_trying = [this] { return vmm_.alive(); };
  return client::AgentClient::connect_with(co, first_calls);
}

VmFailed AgentVm::failure(const std::string& what) const {
  std::string log = vmm_.log_tail();
  return VmFailed(what + (log.empty() ? "" : "\nVMM log:\n" + log));
}

void send_fresh_entropy(client::AgentClient& agent, size_t bytes) {
  std::string entropy(bytes, '\0');
  if (getentropy(entropy.data(), entropy.size()) != 0) throw_errno("getentropy");
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  agent.resumed(entropy, now.tv_sec * 1000000000ll + now.tv_nsec);
}

}  // namespace wisp::manager
