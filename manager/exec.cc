#include "manager/exec.h"

#include <memory>
#include <optional>

#include "base/clock.h"
#include "base/file_io.h"

namespace wisp::manager {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<client::AgentClient> connect(const ExecSpec& spec, AgentVm* vm,
                                             Cancellation* cancellation) {
  auto keep_trying = [cancellation] { return !cancellation || !cancellation->cancelled(); };
  if (vm) return vm->connect_agent(spec.boot_timeout, spec.resumed, keep_trying);
  client::ConnectOptions co;
  client::parse_agent_address(spec.attach, &co);
  co.confirm = spec.resumed;
  co.deadline = spec.boot_timeout;
  co.keep_trying = keep_trying;
  return client::AgentClient::connect(co);
}

// Ping (the guest's own boot figures come back with it), then the restore news if asked.
void greet(client::AgentClient& agent, const ExecSpec& spec, uint64_t start_ns, ExecTimings* t) {
  client::AgentInfo info = agent.ping();
  t->ready = ms_since(start_ns);
  t->guest_uptime = static_cast<double>(info.uptime_ns) / 1e6;
  t->agent_main = static_cast<double>(info.started_ns) / 1e6;
  t->agent_listening = static_cast<double>(info.ready_ns) / 1e6;
  if (info.protocol_version != client::protocol_version() && spec.progress)
    spec.progress("warning: the guest agent speaks protocol " +
                  std::to_string(info.protocol_version) + ", this wisp " +
                  std::to_string(client::protocol_version()) +
                  "; rebuild the guest (make guest) if calls fail");
  if (spec.resumed) send_fresh_entropy(agent, 32);
}

// The handler's calls: start the worker if asked, invoke `repeat` times, stop the worker.
client::InvokeResult call(client::AgentClient& agent, const ExecSpec& spec, std::string payload,
                          uint64_t start_ns, ExecTimings* t) {
  client::Handler h = spec.handler;
  if (h.name.empty() && !h.argv.empty()) h.name = h.argv[0];
  client::InvokeRequest req;
  req.timeout_ms = static_cast<uint64_t>(spec.timeout.count());
  req.payload = std::move(payload);
  if (spec.worker) {
    agent.start_worker(h);
    req.mode = client::InvokeMode::kWorker;
    req.handler.name = h.name;
  } else {
    req.handler = h;
  }
  client::InvokeResult r;
  for (uint64_t i = 0; i < spec.repeat; ++i) {
    double before = ms_since(start_ns);
    r = agent.invoke(req);
    t->invoked = ms_since(start_ns);
    if (spec.repeat > 1) t->rtt_us.push_back((t->invoked - before) * 1000);
  }
  if (spec.on_result) spec.on_result(r);
  if (spec.worker && !spec.keep_worker) agent.stop_worker(h.name);
  return r;
}

void talk_to_agent(const ExecSpec& spec, AgentVm* vm, uint64_t start_ns, Cancellation* cancellation,
                   ExecOutcome* out) {
  // Read while the guest boots.
  std::string payload = spec.payload ? spec.payload() : "";
  std::unique_ptr<client::AgentClient> agent = connect(spec, vm, cancellation);
  out->timings.connected = ms_since(start_ns);
  greet(*agent, spec, start_ns, &out->timings);
  out->result = call(*agent, spec, std::move(payload), start_ns, &out->timings);
  out->has_result = true;
  if (vm) agent->shutdown();
}

}  // namespace

ExecOutcome run_exec(const ExecSpec& spec, uint64_t start_ns, Cancellation* cancellation) {
  ExecOutcome out;
  std::unique_ptr<AgentVm> vm;
  try {
    if (spec.attach.empty()) {
      check_guest_files(spec.vm);
      if (cancellation && cancellation->cancelled()) throw Error("interrupted");
      vm = AgentVm::boot(spec.vm, /*control=*/false, "wisp-exec");
      out.timings.spawned = ms_since(start_ns);
    }
    std::optional<Cancellation::Watch> watch;
    if (vm) watch.emplace(cancellation, vm->vmm());
    talk_to_agent(spec, vm.get(), start_ns, cancellation, &out);
  } catch (const Error& e) {
    out.vm_failed = true;
    out.error = e.what();
  }
  if (vm) {
    // After shutdown the guest powers off on its own; a failed run gets killed sooner.
    out.vmm_status = vm->vmm().wait_or_kill(milliseconds(out.vm_failed ? 200 : 10000));
    out.timings.vmm_exit = ms_since(start_ns);
    try {
      out.vmm_log = read_file(vm->vmm().log_path());
    } catch (const Error&) {
      // No log: the VMM never started writing one.
    }
  }
  return out;
}

}  // namespace wisp::manager
