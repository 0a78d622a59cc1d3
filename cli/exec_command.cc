// `wisp exec`: run one command in a fresh microVM's sandbox (manager/exec.h does the work).
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "base/exit_codes.h"
#include "base/file_io.h"
#include "base/options.h"
#include "cli/commands.h"
#include "cli/common_options.h"
#include "cli/handler_status.h"
#include "cli/payload.h"
#include "cli/signal_watch.h"
#include "manager/exec.h"

namespace wisp::cli {
namespace {

using std::chrono::milliseconds;

constexpr const char* kCommand = "wisp exec";
constexpr const char* kUsage = R"(Usage: wisp exec [OPTIONS] -- CMD [ARGS...]

Boot a fresh microVM with the agent guest, run CMD inside it as an isolated exec handler (an
unprivileged user, own namespaces, no capabilities, seccomp, cgroup limits) with the payload as
its stdin. CMD's stdout goes to stdout, its stderr to stderr, and wisp exec exits with CMD's
exit status. Then the VM is powered off.

Payload (CMD's stdin):
  --payload FILE|-   the file's contents, or - for all of stdin
  -n, --no-stdin     an empty payload; stdin is not read (for scripts that leave a pipe open)
  Without either: stdin when it is a pipe or a file; an empty payload at a terminal.

Options:
  --timeout S        wall-clock limit for CMD (seconds, or 500ms, 2m; default 30); the whole
                     process tree is killed when it passes
  --mode MODE        exec (default): a fresh process for this call; worker: start CMD as a warm
                     worker speaking the framing of api/ and send it one invocation
  --env KEY=VALUE    set a variable in CMD's environment (repeatable)
  --handler-mem SIZE
                     CMD's memory limit (cgroup memory.max): MiB, or with M or G (default 256)
  --handler-pids N   CMD's process limit (cgroup pids.max; default 64)
  --network          give CMD the guest's network (default: its own empty network namespace)
  --boot-timeout S   how long to wait for the guest agent to answer (default 120)
  --timings          print JSON lines to stderr: the VMM's (see wisp run --timings) and
                     wisp exec's own milliseconds from start to VMM spawned, agent connected,
                     agent ready (answered ping; guest_uptime_ms is its kernel's uptime then,
                     guest_agent_main/listening_ms when wisp-agent started and listened),
                     invocation done, VMM exited
  --attach PATH      run CMD in an already running VM (its --vsock-uds socket) instead of
                     booting one; that VM is left running. vsock:CID attaches over AF_VSOCK
                     to guest CID (a VM on the kernel's vhost-vsock, e.g. QEMU's)
  --resumed          before CMD, tell the agent it was just restored from a snapshot (fresh
                     entropy and wall clock, as wisp does after a restore)
  --keep-worker      with --mode worker: leave the warm worker running afterwards
  --repeat N         invoke CMD N times with the same payload (for benchmarks); the last call's
                     output and status count; with --timings, prints each call's round trip
  -h, --help         show this help

%s
Exit status:
  N       CMD exited with status N
  124     CMD ran past --timeout and was killed (its partial output is still written)
  125     a limit ended CMD: memory, pids or output size (named on stderr)
  126     the VM failed: it did not boot, the agent did not answer within --boot-timeout, the
          RPC broke, or the guest files are missing
  128+N   CMD was killed by signal N, or wisp exec itself got SIGINT/SIGTERM/SIGHUP
  2       usage error
)";

struct ExecOptions {
  manager::ExecSpec spec;
  PayloadSource payload;
  std::string mode = "exec";
  bool timings = false;
};

// Returns false for --help (printed). Throws UsageError.
bool parse(int argc, char** argv, ExecOptions* o) {
  manager::ExecSpec& s = o->spec;
  OptionParser p(kCommand);
  add_vm_options(p, &s.vm);
  add_env_option(p, &s.handler.env);
  add_mode_option(p, &o->mode);
  add_payload_options(p, &o->payload);
  p.duration("timeout", &s.timeout, milliseconds(1), milliseconds(7 * 86400000))
      .duration("boot-timeout", &s.boot_timeout, milliseconds(1), milliseconds(7 * 86400000))
      .size("handler-mem", &s.handler.limits.memory_bytes, 1 << 20, 1 << 20, 1ull << 40)
      .count("handler-pids", &s.handler.limits.pids, 1, 1 << 22)
      .count("repeat", &s.repeat, 1, 1 << 24)
      .value("attach",
             [&s](const std::string& v) {
               client::ConnectOptions probe;
               client::parse_agent_address(v, &probe);
               s.attach = v;
             })
      .flag("network", &s.handler.network)
      .flag("resumed", &s.resumed)
      .flag("keep-worker", &s.keep_worker)
      .flag("timings", &o->timings);
  OptionParser::Result args = p.parse(argc, argv);
  if (args.help) {
    std::printf(kUsage, vm_options_help().c_str());
    return false;
  }
  if (!args.operands.empty())
    throw UsageError("unexpected argument '" + args.operands[0] + "' (put CMD after --)");
  if (args.rest.empty()) throw UsageError("no command: wisp exec [OPTIONS] -- CMD [ARGS...]");
  check_payload_options(o->payload);
  check_vm_options(s.vm);
  s.handler.argv = args.rest;
  s.worker = o->mode == "worker";
  s.vm.timings = o->timings;
  return true;
}

void print_vmm_log(const manager::ExecOutcome& out, bool verbose, bool timings) {
  if (verbose) {
    write_all(2, out.vmm_log);
  } else if (out.vm_failed) {
    if (WIFEXITED(out.vmm_status) && WEXITSTATUS(out.vmm_status) != 0)
      std::fprintf(stderr, "wisp exec: the VMM exited with status %d\n",
                   WEXITSTATUS(out.vmm_status));
    if (!out.vmm_log.empty())
      std::fprintf(
          stderr, "wisp exec: VMM log:\n%s",
          out.vmm_log.substr(out.vmm_log.size() > 4000 ? out.vmm_log.size() - 4000 : 0).c_str());
  } else if (timings) {
    for (size_t p = 0; (p = out.vmm_log.find('{', p)) != std::string::npos;) {
      size_t e = out.vmm_log.find('\n', p);
      write_all(2, out.vmm_log.substr(p, e == std::string::npos ? e : e - p + 1));
      p = e;
    }
  }
}

void print_timings(const manager::ExecTimings& t) {
  if (!t.rtt_us.empty()) {
    std::string list;
    for (double us : t.rtt_us) list += (list.empty() ? "" : ",") + std::to_string(us);
    std::fprintf(stderr, "{\"exec_rtt_us\":[%s]}\n", list.c_str());
  }
  std::fprintf(stderr,
               "{\"exec_vmm_spawned_ms\":%.3f,\"exec_agent_connected_ms\":%.3f,"
               "\"exec_agent_ready_ms\":%.3f,\"guest_uptime_ms\":%.3f,"
               "\"guest_agent_main_ms\":%.3f,\"guest_agent_listening_ms\":%.3f,"
               "\"exec_invoke_done_ms\":%.3f,\"exec_vmm_exit_ms\":%.3f}\n",
               t.spawned, t.connected, t.ready, t.guest_uptime, t.agent_main, t.agent_listening,
               t.invoked, t.vmm_exit);
}

}  // namespace

int exec_command(int argc, char** argv, uint64_t t0_ns) {
  ExecOptions o;
  try {
    if (!parse(argc, argv, &o)) return kExitOk;
  } catch (const UsageError& e) {
    return usage_error(kCommand, e.what());
  }
  signal(SIGPIPE, SIG_IGN);  // a closed stdout must not kill us before the VM is torn down
  manager::Cancellation cancel;
  // Attached, there is no VMM of ours to kill: nothing to clean up, so a signal ends us at once.
  SignalWatch watch([&cancel](int) { cancel.cancel(); },
                    milliseconds(o.spec.attach.empty() ? 2000 : 0));
  o.spec.payload = [&] { return read_payload(o.payload, 0, watch.cancel_fd()); };
  int rc = kExitVmFailed;
  o.spec.on_result = [&rc, &o](const client::InvokeResult& r) {
    std::string failed = write_result(r);
    if (!failed.empty()) {
      std::fprintf(stderr, "wisp exec: %s\n", failed.c_str());
      rc = kExitError;
      return;
    }
    rc = handler_exit_status(kCommand, r, o.spec.timeout);
  };
  o.spec.progress = [](const std::string& m) {
    std::fprintf(stderr, "wisp exec: %s\n", m.c_str());
  };
  manager::ExecOutcome out = manager::run_exec(o.spec, t0_ns, &cancel);
  if (watch.signal()) return kExitSignalBase + watch.signal();
  if (out.vm_failed) {
    std::fprintf(stderr, "wisp exec: %s\n", out.error.c_str());
    rc = kExitVmFailed;
  }
  print_vmm_log(out, o.spec.vm.verbose > 0, o.timings);
  if (o.timings) print_timings(out.timings);
  return rc;
}

}  // namespace wisp::cli
