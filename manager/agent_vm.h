// A function VM under the manager's control: a wisp-vmm child running the agent guest, booted
// or restored in its own runtime directory (vsock socket, control socket, VMM log), and the
// pieces every operation on it shares (connecting to its agent, its control channel, the
// errors that carry its log). Destruction kills the VMM, then removes the directory. One
// thread owns an AgentVm (its agent clients belong to that thread's KJ event loop).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api/agent_client.h"
#include "api/vmm_client.h"
#include "base/error.h"
#include "manager/cancellation.h"
#include "manager/runtime_dir.h"
#include "manager/vm_net.h"
#include "manager/vm_spec.h"
#include "manager/vmm_child.h"

namespace wisp::manager {

// Reports a long step as it starts ("booting NAME..."); the CLI prints it, a service logs it.
using Progress = std::function<void(const std::string& message)>;

// The VM failed (did not boot or restore, its agent was unreachable or broke the RPC), as
// opposed to a bad request or a missing template. `wisp exec` and `wisp invoke` exit 126.
class VmFailed : public Error {
 public:
  using Error::Error;
};

// What a clone's restore loads before its guest runs (wisp-vmm restore's --no-prefetch and
// --no-prefault: the figures of each part are measured with the others on).
enum class Prefetch {
  kFull,        // the template's working set read in and mapped in KVM's EPT/NPT (where it can)
  kNoPrefault,  // read in only: each page still costs the guest an exit on its first touch
  kNone,        // nothing: every page loads on the guest's first touch
};

class AgentVm {
 public:
  // Boots `spec` (wisp-vmm run) in a runtime directory named PREFIX-XXXXXX. `control`: the
  // VMM also listens on a control socket. Throws Error when wisp-vmm cannot be started.
  static std::unique_ptr<AgentVm> boot(const VmSpec& spec, bool control, const char* prefix);
  // Restores a clone of the snapshot at `snapshot_dir` (wisp-vmm restore) with the snapshot's
  // drives at `drives` ("PATH[,ro]", in slot order: a snapshot names no host file itself) and
  // waits up to `timeout` until it is rebuilt (about to run). Throws VmFailed with the VMM's log.
  // `cancellation` (may be null) kills the clone while this waits. `prefetch`: what of the
  // snapshot's working set (if it has one) is loaded ahead. `net`: the
  // template's network: its NICs (vmm_restore_net_args) and, for a bare --net, a namespace of
  // the clone's own made as a boot makes it (its TAP wisp0 is the one the snapshot reopens).
  static std::unique_ptr<AgentVm> restore(const std::string& snapshot_dir,
                                          const std::vector<std::string>& drives, const VmNet& net,
                                          bool control, std::chrono::milliseconds timeout,
                                          const JailFlags& jail,
                                          Cancellation* cancellation = nullptr,
                                          Prefetch prefetch = Prefetch::kFull);
  // A standby VMM (wisp-vmm standby, `args` after "standby") in a runtime directory named
  // PREFIX-XXXXXX, its vsock socket at vsock.sock (and control.sock with `control`), given
  // `order_fd` (its end of the order socketpair: the caller closes its own copy). It restores
  // when ordered to (manager/vmm_pool.h, which owns the order socket). Throws Error when
  // wisp-vmm cannot be started.
  static std::unique_ptr<AgentVm> standby(const std::vector<std::string>& args, bool control,
                                          int order_fd, const char* prefix);
  AgentVm(const AgentVm&) = delete;
  AgentVm& operator=(const AgentVm&) = delete;

  // Connects to the agent, retrying until `deadline` while the VMM lives and `keep_trying`
  // (if given) says so. `confirm`: a clone just restored (see client::ConnectOptions).
  // Throws client::AgentError.
  std::unique_ptr<client::AgentClient> connect_agent(std::chrono::milliseconds deadline,
                                                     bool confirm,
                                                     std::function<bool()> keep_trying = {});
  // The same, making the first calls with the connection request (client::AgentClient::
  // connect_with): for a clone just restored, whose VMM holds the connect until the guest has
  // handled the vsock reset, so the connection that goes through stays up.
  std::unique_ptr<client::AgentClient> connect_agent_with(
      std::chrono::milliseconds deadline,
      const std::function<void(client::AgentClient&)>& first_calls);
  // Its control channel (the VM must have been started with `control`). Throws Error.
  std::unique_ptr<client::VmmClient> control() const {
    return client::VmmClient::connect(dir_.file("control.sock"));
  }
  VmmChild& vmm() { return vmm_; }
  // For a restored clone: what its jail cost (from the VMM's ready line), in ms; 0 unjailed.
  double jail_ms() const { return jail_ms_; }
  // Takes jail_ms() from the VMM's ready line ("ready LOADED RESTORED JAIL"); 0 if malformed.
  void note_ready(const std::string& line);
  const RuntimeDir& dir() const { return dir_; }
  // VmFailed carrying `what` and the tail of the VMM's log (its stderr), if it wrote one.
  VmFailed failure(const std::string& what) const;

 private:
  AgentVm(const char* prefix,
          const std::function<std::vector<std::string>(const RuntimeDir&)>& args, bool ready_pipe,
          int order_fd = -1, std::unique_ptr<host_net::VmNetwork> network = nullptr);

  RuntimeDir dir_;  // declared before vmm_: the VMM dies before its directory goes
  VmmChild vmm_;
  double jail_ms_ = 0;
};

// The arguments of `wisp-vmm restore` for a clone of `snapshot_dir` with the snapshot's
// `drives` and NICs `net`, its vsock bridged to `vsock_uds`, a control socket at `control_socket`
// if not empty, jailed by `jail` with its jail root under `jail_dir`; `prefetch` as for
// AgentVm::restore.
std::vector<std::string> vmm_restore_args(const std::string& snapshot_dir,
                                          const std::vector<std::string>& drives, const VmNet& net,
                                          const std::string& vsock_uds,
                                          const std::string& control_socket, const JailFlags& jail,
                                          const std::string& jail_dir,
                                          Prefetch prefetch = Prefetch::kFull);

// The jail cost in ms a restored VMM's ready line ("ready LOADED RESTORED JAIL") reports; 0
// when it does not.
double ready_line_jail_ms(const std::string& ready_line);

// `bytes` of fresh entropy and the host's wall clock, handed to a clone's agent
// (agent.resumed) so that no two clones share RNG state or a stale clock. Throws Error.
void send_fresh_entropy(client::AgentClient& agent, size_t bytes);

}  // namespace wisp::manager
