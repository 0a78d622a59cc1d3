// wisp-agent: the in-guest agent, PID 1 of a function guest. Wires the pieces together:
// PID 1 duties (pid1.h), the child reaper, the Agent RPC server (agent_server.h) on vsock
// (vsock_listener.h), handlers in sandboxes (sandbox.h).
#include <capnp/message.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <signal.h>
#include <unistd.h>

#include "agent/agent_server.h"
#include "agent/cgroup.h"
#include "agent/child_reaper.h"
#include "agent/guest_network.h"
#include "agent/pid1.h"
#include "agent/vsock_listener.h"
#include "base/clock.h"

namespace wisp::agent {
namespace {

class LogErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    console_log("background task failed: %s", e.getDescription().cStr());
  }
};

capnp::ReaderOptions bounded_reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = api::Agent::MAX_MESSAGE_BYTES / sizeof(capnp::word);
  options.nestingLimit = 32;
  return options;
}

void serve(AgentTimes& times, bool pid1) {
  kj::UnixEventPort::captureSignal(SIGCHLD);
  auto io = kj::setupAsyncIo();
  ChildReaper reaper(io.unixEventPort);
  LogErrors log_errors;
  kj::TaskSet background(log_errors);
  SandboxRemains remains(io.provider->getTimer(), background);
  AgentServices services{*io.lowLevelProvider, io.provider->getTimer(), reaper, background,
                         remains};

  auto listener = listen_vsock(*io.lowLevelProvider, api::Agent::PORT);
  times.ready_ns = wisp::boot_time_ns();
  uint64_t handover = pid1 ? init_handover_ns() : 0;
  console_log(
      "ready on vsock port %u: main at %.3f ms, listening at %.3f ms (boottime; mounts %.3f, "
      "cgroups %.3f, event loop + listen %.3f ms)%s%.3f%s",
      api::Agent::PORT, times.started_ns / 1e6, times.ready_ns / 1e6,
      (times.mounted_ns - times.started_ns) / 1e6, (times.cgroups_ns - times.mounted_ns) / 1e6,
      (times.ready_ns - times.cgroups_ns) / 1e6, handover ? "; kernel ran /init at " : "",
      handover ? handover / 1e6 : 0.0, handover ? " ms (printk clock)" : "");

  capnp::Capability::Client agent = kj::heap<AgentImpl>(services, times, [pid1]() {
    if (pid1) power_off();
    _exit(0);
  });
  AgentListener server(kj::mv(listener), kj::mv(agent), bounded_reader_options());
  auto reaping = reaper.run().eagerlyEvaluate(
      [](kj::Exception&& e) { console_log("child reaper failed: %s", e.getDescription().cStr()); });
  server.run().wait(io.waitScope);
}

}  // namespace
}  // namespace wisp::agent

int main() {
  using namespace wisp::agent;
  AgentTimes times;
  times.started_ns = wisp::boot_time_ns();
  bool pid1 = getpid() == 1;
  signal(SIGPIPE, SIG_IGN);
  if (pid1) {
    set_up_pid1();
    set_up_guest_network();
  }
  times.mounted_ns = wisp::boot_time_ns();
  try {
    set_up_cgroup_parent();
  } catch (const kj::Exception& e) {
    console_log("cgroups unavailable, handlers cannot run: %s", e.getDescription().cStr());
  }
  times.cgroups_ns = wisp::boot_time_ns();
  try {
    serve(times, pid1);
  } catch (const kj::Exception& e) {
    console_log("fatal: %s", e.getDescription().cStr());
  }
  // PID 1 must not return (the kernel would panic): end the VM instead.
  if (pid1) power_off();
  return 1;
}
