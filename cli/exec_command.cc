#include "cli/exec_command.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "api/agent_client.h"
#include "cli/cli_util.h"
#include "cli/run_command.h"
#include "base/error.h"

extern char** environ;

namespace wisp {
namespace {

constexpr const char* kUsage = R"(Usage: wisp exec [OPTIONS] -- CMD [ARGS...]

Boot a fresh microVM with the agent guest, run CMD inside it as an isolated exec handler (an
unprivileged user, own namespaces, no capabilities, seccomp, cgroup limits), with this
process's stdin as CMD's stdin. CMD's stdout goes to stdout, its stderr to stderr, and
wisp exec exits with CMD's exit status. Then the VM is powered off.

Options:
  --timeout S        wall-clock limit for CMD in seconds (default 30); the whole process tree
                     is killed when it passes
  --mode MODE        exec (default): a fresh process for this call; worker: start CMD as a warm
                     worker speaking the framing of api/ and send it one invocation
  --env KEY=VALUE    set a variable in CMD's environment (repeatable)
  --handler-mem MIB  CMD's memory limit (cgroup memory.max; default 256)
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
  --repeat N         invoke CMD N times with the same stdin (for benchmarks); the last call's
                     output and status count; with --timings, prints each call's round trip
  --initrd PATH      the guest initramfs (default: <wisp>/../guest/agent-initramfs.cpio.gz,
                     which runs wisp-agent as PID 1; none with --rootfs)
  --rootfs IMAGE     boot the agent from an ext4 root filesystem image instead (e.g.
                     <wisp>/../guest/python-rootfs.ext4, Debian with python3; see wisp run
                     --help): attached read-only, writes go to a per-VM tmpfs overlay
  -h, --help         show this help

VM options, passed to the VMM (see wisp run --help): --kernel PATH, --cmdline STR (appended
to "quiet"), --raw-cmdline, --mem MIB, --vcpus N, --drive PATH[,ro], --no-rng,
--vsock-cid N, --console none|FILE (default none), -v/--verbose (VMM diagnostics on stderr).

Exit status:
  N       CMD exited with status N
  124     CMD ran past --timeout and was killed (its partial output is still written)
  125     a limit ended CMD: memory, pids or output size (named on stderr)
  126     the VM failed: it did not boot, the agent did not answer within --boot-timeout, the
          RPC broke, or the guest files are missing
  128+N   CMD was killed by signal N, or wisp exec itself got SIGINT/SIGTERM/SIGHUP
  2       usage error
)";

// Options that `wisp run` takes with an argument, and flags, passed through unchanged.
constexpr const char* kRunOptionsWithArg[] = {"--kernel", "--mem", "--vcpus", "--drive",
                                              "--vsock-cid"};
constexpr const char* kRunFlags[] = {"--raw-cmdline", "--no-rng", "--verbose", "-v"};

struct ExecOptions {
  double timeout_s = 30;
  double boot_timeout_s = 120;
  bool worker = false;
  bool timings = false;
  bool network = false;
  bool verbose = false;
  bool raw_cmdline = false;
  bool resumed = false, keep_worker = false;
  uint64_t repeat = 1;
  std::string attach;
  std::vector<std::string> env;
  uint64_t handler_mem_mib = 256;
  uint32_t handler_pids = 64;
  std::string initrd, console = "none", cmdline, rootfs;
  std::vector<std::string> run_args;  // passed through to `wisp run`
  std::vector<std::string> command;
};

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "wisp exec: %s\nTry 'wisp exec --help'.\n", msg.c_str());
  return kExitUsage;
}

bool parse_seconds(const std::string& s, double* out) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end || !(v > 0) || v > 86400 * 7) return false;
  *out = v;
  return true;
}

bool parse_uint(const std::string& s, uint64_t max, uint64_t* out) {
  char* end = nullptr;
  if (s.empty() || s[0] == '-') return false;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno || *end || v == 0 || v > max) return false;
  *out = v;
  return true;
}

bool is_one_of(const std::string& a, const auto& list) {
  for (const char* s : list)
    if (a == s) return true;
  return false;
}

// Returns 0 on success, else the exit status for a usage error (already reported).
int parse_options(int argc, char** argv, ExecOptions* o, bool* help) {
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    std::string value;
    bool has_inline = false;
    if (a.starts_with("--") && a.find('=') != std::string::npos) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      has_inline = true;
    }
    auto next = [&](std::string* out) {
      if (has_inline) {
        *out = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    uint64_t n;
    if (a == "-h" || a == "--help") {
      *help = true;
      return 0;
    } else if (a == "--timeout") {
      if (!next(&v) || !parse_seconds(v, &o->timeout_s))
        return usage_error("--timeout: expected seconds > 0");
    } else if (a == "--boot-timeout") {
      if (!next(&v) || !parse_seconds(v, &o->boot_timeout_s))
        return usage_error("--boot-timeout: expected seconds > 0");
    } else if (a == "--mode") {
      if (!next(&v) || (v != "exec" && v != "worker"))
        return usage_error("--mode: expected exec or worker");
      o->worker = v == "worker";
    } else if (a == "--env") {
      if (!next(&v) || v.find('=') == std::string::npos || v[0] == '=')
        return usage_error("--env: expected KEY=VALUE");
      o->env.push_back(v);
    } else if (a == "--handler-mem") {
      if (!next(&v) || !parse_uint(v, 1 << 20, &n))
        return usage_error("--handler-mem: expected MiB > 0");
      o->handler_mem_mib = n;
    } else if (a == "--handler-pids") {
      if (!next(&v) || !parse_uint(v, 1 << 22, &n))
        return usage_error("--handler-pids: expected a count > 0");
      o->handler_pids = static_cast<uint32_t>(n);
    } else if (a == "--attach") {
      if (!next(&o->attach) || o->attach.empty()) return usage_error("--attach: expected a path");
      try {
        client::ConnectOptions probe;
        client::parse_agent_address(o->attach, &probe);
      } catch (const Error& e) {
        return usage_error(std::string("--attach: ") + e.what());
      }
    } else if (a == "--resumed") {
      o->resumed = true;
    } else if (a == "--keep-worker") {
      o->keep_worker = true;
    } else if (a == "--repeat") {
      if (!next(&v) || !parse_uint(v, 1 << 24, &o->repeat))
        return usage_error("--repeat: expected a count > 0");
    } else if (a == "--network") {
      o->network = true;
    } else if (a == "--timings") {
      o->timings = true;
    } else if (a == "--initrd") {
      if (!next(&o->initrd)) return usage_error("--initrd: expected a path");
    } else if (a == "--rootfs") {
      if (!next(&o->rootfs) || o->rootfs.empty()) return usage_error("--rootfs: expected a path");
    } else if (a == "--cmdline") {
      if (!next(&o->cmdline)) return usage_error("--cmdline: expected a string");
    } else if (a == "--console") {
      if (!next(&o->console) || o->console.empty() || o->console == "stdio")
        return usage_error("--console: expected none or FILE (stdio would mix with CMD's output)");
    } else if (a == "--vsock-uds" || a == "--no-initrd") {
      return usage_error(a + " is set by wisp exec itself");
    } else if (is_one_of(a, kRunOptionsWithArg)) {
      if (!next(&v)) return usage_error(a + ": expected a value");
      o->run_args.insert(o->run_args.end(), {a, v});
    } else if (is_one_of(a, kRunFlags) && !has_inline) {
      if (a == "-v" || a == "--verbose") o->verbose = true;
      if (a == "--raw-cmdline") o->raw_cmdline = true;
      o->run_args.push_back(a);
    } else {
      return usage_error("unknown option '" + a + "' (put CMD after --)");
    }
  }
  for (; i < argc; ++i) o->command.push_back(argv[i]);
  if (o->command.empty()) return usage_error("no command: wisp exec [OPTIONS] -- CMD [ARGS...]");
  return 0;
}

// The temp dir and the VMM child, visible to the signal handler so an interrupted wisp exec
// leaves neither behind. Only async-signal-safe calls touch them there.
struct Cleanup {
  char dir[PATH_MAX] = {};
  char sock[PATH_MAX] = {};
  char log[PATH_MAX] = {};
  volatile pid_t vmm = 0;
};
Cleanup g_cleanup;  // NOLINT: the one state a signal handler needs

void remove_temp_files() {
  if (g_cleanup.sock[0]) unlink(g_cleanup.sock);
  if (g_cleanup.log[0]) unlink(g_cleanup.log);
  if (g_cleanup.dir[0]) rmdir(g_cleanup.dir);
}

void on_fatal_signal(int sig) {
  if (g_cleanup.vmm > 0) {
    kill(g_cleanup.vmm, SIGKILL);
    waitpid(g_cleanup.vmm, nullptr, 0);
  }
  remove_temp_files();
  _exit(kExecSignalBase + sig);
}

void copy_path(char (&dst)[PATH_MAX], const std::string& src) {
  std::snprintf(dst, sizeof(dst), "%s", src.c_str());
}

std::string read_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string s = read_all_fd(fd);
  close(fd);
  return s;
}

void write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed pipe: the reader has gone, nothing more to do
    off += static_cast<size_t>(n);
  }
}

// Spawns `wisp run` for the agent guest; its console and stderr go to files in the temp dir.
pid_t spawn_vmm(const ExecOptions& o, const std::string& sock, const std::string& log) {
  std::string self = self_exe();
  std::vector<std::string> args = {self, "run", "--vsock-uds", sock, "--console", o.console};
  if (!o.initrd.empty()) args.insert(args.end(), {"--initrd", o.initrd});
  if (!o.rootfs.empty()) args.insert(args.end(), {"--rootfs", o.rootfs});
  args.insert(args.end(), o.run_args.begin(), o.run_args.end());
  // quiet: each console byte is a VM exit, and nobody reads this console by default.
  std::string cmdline =
      o.raw_cmdline ? o.cmdline : "quiet" + (o.cmdline.empty() ? "" : " " + o.cmdline);
  if (!cmdline.empty()) args.insert(args.end(), {"--cmdline", cmdline});
  if (o.timings) args.push_back("--timings");
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, self.c_str(), &fa, nullptr, cargs.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errno = rc;
    throw_errno("wisp exec: cannot start the VMM (" + self + " run)");
  }
  return pid;
}

// Waits up to `grace` for the VMM to exit, then kills it. Returns its wait status.
int reap_vmm(pid_t pid, std::chrono::milliseconds grace) {
  auto end = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  g_cleanup.vmm = 0;
  return status;
}

std::string tail(const std::string& s, size_t n) {
  return s.size() > n ? s.substr(s.size() - n) : s;
}

// Maps the handler's result to wisp exec's exit status, explaining wisp's own codes.
int exit_status_of(const client::InvokeResult& r, double timeout_s) {
  if (r.timed_out) {
    std::fprintf(stderr, "wisp exec: the command ran past its %g s timeout and was killed\n",
                 timeout_s);
    return kExecTimedOut;
  }
  if (!r.limit_exceeded.empty() || r.output_truncated) {
    std::string which = r.limit_exceeded.empty() ? "output" : r.limit_exceeded;
    std::fprintf(stderr, "wisp exec: the command exceeded its %s limit%s (peak memory %llu KiB)\n",
                 which.c_str(), r.output_truncated ? "; its output was truncated" : "",
                 static_cast<unsigned long long>(r.peak_memory_bytes >> 10));
    return kExecLimitExceeded;
  }
  if (r.signaled) {
    std::fprintf(stderr, "wisp exec: the command was killed by signal %d (%s)\n", r.signal,
                 strsignal(r.signal));
    return kExecSignalBase + r.signal;
  }
  return r.exit_code;
}

struct Timings {
  double spawned = -1, connected = -1, ready = -1, invoked = -1, vmm_exit = -1, uptime = -1;
  double agent_main = -1, agent_listening = -1;  // guest CLOCK_BOOTTIME, ms
  std::vector<double> rtt_us;                    // --repeat: each call's round trip
};

int run_in_vm(const ExecOptions& o, unsigned long long t0_ns, Timings* t, pid_t vmm,
              bool* vm_failed) {
  // Read the payload while the guest boots.
  std::string payload = read_all_fd(0);
  client::ConnectOptions co;
  client::parse_agent_address(o.attach.empty() ? g_cleanup.sock : o.attach, &co);
  co.confirm = o.resumed;
  co.deadline = std::chrono::milliseconds(static_cast<int64_t>(o.boot_timeout_s * 1000));
  if (vmm > 0)
    co.keep_trying = [vmm] {
      int status;
      return waitpid(vmm, &status, WNOHANG) == 0;  // (a reaped child is reported as failure)
    };
  std::unique_ptr<client::AgentClient> agent;
  try {
    agent = client::AgentClient::connect(co);
    t->connected = ms_since(t0_ns);
    client::AgentInfo info = agent->ping();
    t->ready = ms_since(t0_ns);
    t->uptime = static_cast<double>(info.uptime_ns) / 1e6;
    t->agent_main = static_cast<double>(info.started_ns) / 1e6;
    t->agent_listening = static_cast<double>(info.ready_ns) / 1e6;
    if (info.protocol_version != client::protocol_version())
      std::fprintf(stderr,
                   "wisp exec: warning: the guest agent speaks protocol %u, this wisp %u; "
                   "rebuild the guest (make guest) if calls fail\n",
                   info.protocol_version, client::protocol_version());
    if (o.resumed) {
      std::string entropy(32, '\0');
      if (getentropy(entropy.data(), entropy.size()) != 0) throw_errno("getentropy");
      timespec now;
      clock_gettime(CLOCK_REALTIME, &now);
      agent->resumed(entropy, now.tv_sec * 1000000000ll + now.tv_nsec);
    }
    client::Handler h;
    h.name = o.command[0];
    h.argv = o.command;
    h.env = o.env;
    h.limits.memory_bytes = o.handler_mem_mib << 20;
    h.limits.pids = o.handler_pids;
    h.network = o.network;
    client::InvokeRequest req;
    req.timeout_ms = static_cast<uint64_t>(o.timeout_s * 1000);
    req.payload = std::move(payload);
    if (o.worker) {
      agent->start_worker(h);
      req.mode = client::InvokeMode::kWorker;
      req.handler.name = h.name;
    } else {
      req.handler = h;
    }
    client::InvokeResult r;
    for (uint64_t i = 0; i < o.repeat; ++i) {
      double before = ms_since(t0_ns);
      r = agent->invoke(req);
      t->invoked = ms_since(t0_ns);
      if (o.repeat > 1) t->rtt_us.push_back((t->invoked - before) * 1000);
    }
    write_all(1, r.out);
    write_all(2, r.err);
    int rc = exit_status_of(r, o.timeout_s);
    if (o.worker && !o.keep_worker) agent->stop_worker(h.name);
    if (vmm > 0) agent->shutdown();
    return rc;
  } catch (const client::AgentError& e) {
    *vm_failed = true;
    std::fprintf(stderr, "wisp exec: %s\n", e.what());
    return kExecVmFailed;
  } catch (const Error& e) {
    *vm_failed = true;
    std::fprintf(stderr, "wisp exec: %s\n", e.what());
    return kExecVmFailed;
  }
}

}  // namespace

int exec_command(int argc, char** argv, unsigned long long t0_ns) {
  ExecOptions o;
  bool help = false;
  if (int rc = parse_options(argc, argv, &o, &help)) return rc;
  if (help) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (o.initrd.empty() && o.rootfs.empty()) {
    std::string self = self_exe();
    o.initrd = self.substr(0, self.rfind('/')) + "/../guest/agent-initramfs.cpio.gz";
  }
  struct stat st;
  if (o.attach.empty() && !o.rootfs.empty() && stat(o.rootfs.c_str(), &st) != 0) {
    std::fprintf(
        stderr, "wisp exec: the root filesystem image %s is missing: build it with 'make rootfs'\n",
        o.rootfs.c_str());
    return kExecVmFailed;
  }
  if (o.attach.empty() && !o.initrd.empty() && stat(o.initrd.c_str(), &st) != 0) {
    std::fprintf(stderr,
                 "wisp exec: the agent guest initramfs %s is missing: build it with 'make guest' "
                 "or pass --initrd\n",
                 o.initrd.c_str());
    return kExecVmFailed;
  }

  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/wisp-exec-XXXXXX";
  if (!mkdtemp(templ.data())) {
    std::fprintf(stderr, "wisp exec: %s\n",
                 errno_message("cannot create a temp dir (" + templ + "); set TMPDIR").c_str());
    return kExecVmFailed;
  }
  copy_path(g_cleanup.dir, templ);
  copy_path(g_cleanup.sock, templ + "/vm.sock");
  copy_path(g_cleanup.log, templ + "/vmm.log");
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a closed stdout must not kill us before the VM is torn down

  Timings t;
  bool vm_failed = false;
  int rc;
  pid_t vmm = 0;
  try {
    if (o.attach.empty()) {
      vmm = spawn_vmm(o, g_cleanup.sock, g_cleanup.log);
      g_cleanup.vmm = vmm;
      t.spawned = ms_since(t0_ns);
    }
    rc = run_in_vm(o, t0_ns, &t, vmm, &vm_failed);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    vm_failed = true;
    rc = kExecVmFailed;
  }
  int status = 0;
  if (vmm > 0) {
    // After shutdown the guest powers off on its own; a failed run gets killed sooner.
    status = reap_vmm(vmm, std::chrono::milliseconds(vm_failed ? 200 : 10000));
    t.vmm_exit = ms_since(t0_ns);
  }
  std::string vmm_log = read_file(g_cleanup.log);
  if (o.verbose) {
    write_all(2, vmm_log);
  } else if (vm_failed) {
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
      std::fprintf(stderr, "wisp exec: the VMM exited with status %d\n", WEXITSTATUS(status));
    if (!vmm_log.empty())
      std::fprintf(stderr, "wisp exec: VMM log (%s):\n%s", g_cleanup.log,
                   tail(vmm_log, 4000).c_str());
  } else if (o.timings) {
    for (size_t p = 0; (p = vmm_log.find('{', p)) != std::string::npos;) {
      size_t e = vmm_log.find('\n', p);
      write_all(2, vmm_log.substr(p, e == std::string::npos ? e : e - p + 1));
      p = e;
    }
  }
  if (o.timings && !t.rtt_us.empty()) {
    std::string list;
    for (double us : t.rtt_us) list += (list.empty() ? "" : ",") + std::to_string(us);
    std::fprintf(stderr, "{\"exec_rtt_us\":[%s]}\n", list.c_str());
  }
  if (o.timings)
    std::fprintf(stderr,
                 "{\"exec_vmm_spawned_ms\":%.3f,\"exec_agent_connected_ms\":%.3f,"
                 "\"exec_agent_ready_ms\":%.3f,\"guest_uptime_ms\":%.3f,"
                 "\"guest_agent_main_ms\":%.3f,\"guest_agent_listening_ms\":%.3f,"
                 "\"exec_invoke_done_ms\":%.3f,\"exec_vmm_exit_ms\":%.3f}\n",
                 t.spawned, t.connected, t.ready, t.uptime, t.agent_main, t.agent_listening,
                 t.invoked, t.vmm_exit);
  remove_temp_files();
  return rc;
}

}  // namespace wisp
