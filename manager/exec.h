// One command in a fresh VM (what `wisp exec` does): boot the agent guest, run the command as a
// sandboxed handler with the caller's payload as its stdin, hand back its result, and tear the
// VM down. Or, with `attach`, the same calls against an agent that is already running.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "api/agent_client.h"
#include "manager/agent_vm.h"
#include "manager/cancellation.h"
#include "manager/vm_spec.h"

namespace wisp::manager {

struct ExecSpec {
  VmSpec vm;
  // An agent address (client::parse_agent_address) to use instead of booting a VM; that VM
  // is left running.
  std::string attach;
  client::Handler handler;   // argv, env, limits, network
  bool worker = false;       // start the handler as a warm worker and invoke it
  bool keep_worker = false;  // leave that worker running afterwards
  bool resumed = false;      // tell the agent it was just restored first (fresh entropy, clock)
  std::chrono::milliseconds timeout{30000};        // the handler's wall-clock limit
  std::chrono::milliseconds boot_timeout{120000};  // until the agent answers
  uint64_t repeat = 1;                             // invocations (benchmarks); the last counts
  // The payload, asked for once the VM is booting, so reading it overlaps the boot. May throw
  // Error (e.g. interrupted), which ends the operation like a VM failure.
  std::function<std::string()> payload;
  // Called with the last invocation's result as soon as it is back (before the teardown).
  std::function<void(const client::InvokeResult&)> on_result;
  Progress progress;  // warnings (an agent speaking another protocol version)
};

// Milliseconds from `start_ns`; -1 for a step that did not happen.
struct ExecTimings {
  double spawned = -1, connected = -1, ready = -1, invoked = -1, vmm_exit = -1;
  double guest_uptime = -1;  // the guest kernel's uptime when the agent answered
  double agent_main = -1, agent_listening = -1;  // guest CLOCK_BOOTTIME of wisp-agent's start
  std::vector<double> rtt_us;                    // with repeat > 1: each call's round trip
};

struct ExecOutcome {
  bool vm_failed = false;  // the VM did not boot, the agent was unreachable or broke the RPC
  std::string error;       // why, when vm_failed
  bool has_result = false;
  client::InvokeResult result;  // the last invocation's
  ExecTimings timings;
  int vmm_status = 0;   // the VMM's wait status (a booted VM)
  std::string vmm_log;  // its stderr: diagnostics, and its --timings line
};

// Runs `spec`; timings count from `start_ns` (CLOCK_MONOTONIC; the caller's start). Does not
// throw: every failure is in the outcome. `cancellation` (may be null) stops it from another
// thread.
ExecOutcome run_exec(const ExecSpec& spec, uint64_t start_ns, Cancellation* cancellation);

}  // namespace wisp::manager
