#include "cli/template_command.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "api/agent_client.h"
#include "cli/cli_util.h"
#include "cli/control_handler.h"
#include "cli/run_command.h"
#include "cli/template_store.h"
#include "cli/vmm_child.h"
#include "base/error.h"

namespace wisp {
namespace {

constexpr const char* kUsage = R"(Usage: wisp template COMMAND ...

  create NAME --handler "CMD ARGS" [--mode exec|worker] [--warmup N]
         [--warmup-payload FILE] [--env KEY=VALUE]... [--boot-timeout S] [--timings]
         [run options]
      Boot a function VM, start its handler, warm it up and snapshot it as template NAME.
      exec mode: each invocation runs CMD afresh in the sandbox. worker mode: CMD is started
      now as a warm worker (api/worker_protocol.md) and its initialisation (imports, model
      loading) is in the snapshot. --warmup N: invoke N times (payload: --warmup-payload, or
      empty) before the snapshot, so the paths a call takes are warm in it. Then the agent
      syncs (prepareSnapshot) and the VM is snapshotted and destroyed.
      Run options (see wisp run --help): --kernel, --initrd, --rootfs IMAGE, --mem MIB
      (default 256), --vcpus N, --cmdline STR, --drive PATH[,ro], --no-rng,
      --console FILE. Default guest: the agent initramfs built by make.
      --timings prints a JSON line to stderr: boot_ms, warmup_ms, snapshot_ms (pause + save
      of the snapshot), memory_file_bytes, memory_disk_bytes, total_ms.
  ls
      List the templates: name, mode, memory, snapshot size on disk, handler.
  rm NAME
      Delete template NAME.

The store is $WISP_HOME/templates (WISP_HOME defaults to /var/lib/wisp).
)";

constexpr const char* kInvokeUsage =
    R"(Usage: wisp invoke NAME [--payload FILE|-] [--timeout S] [--timings]

Restore a fresh clone of template NAME (wisp template create), invoke its handler once with
the payload (default: none; - reads stdin), print the result (the handler's stdout) on
stdout and its stderr on stderr, and destroy the clone. The clone gets fresh entropy and the
current wall-clock time before the call (agent.resumed), so no two clones share RNG state.

  --timeout S   the handler's wall-clock limit in seconds (default 30)
  --timings     print a JSON line to stderr: restore_ms (start until the clone's VMM is
                rebuilt and about to run), reconnect_ms (until the agent answered and took
                the fresh entropy and clock), invoke_ms (the call), total_ms (start to
                result), pages_touched (guest pages the clone mapped: read or written)

Exit status: the handler's; 124 it timed out; 125 a limit ended it; 126 the clone failed
(restore, agent unreachable); 2 usage error; 1 other errors (e.g. no such template).
)";

// How long a template VM idles between its last RPC and the snapshot.
constexpr int kSettleMs = 500;

int usage_error(const char* cmd, const std::string& msg) {
  std::fprintf(stderr, "wisp %s: %s\nTry 'wisp %s --help'.\n", cmd, msg.c_str(), cmd);
  return kExitUsage;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A number from a flat JSON object line (our own control replies).
double json_number(const std::string& json, const std::string& key) {
  size_t p = json.find("\"" + key + "\":");
  if (p == std::string::npos) return 0;
  return std::strtod(json.c_str() + p + key.size() + 3, nullptr);
}

// A private directory for a VM's sockets and log: Unix socket paths are limited to 108
// bytes, so it lives in $TMPDIR or /tmp, not in the store.
class RuntimeDir {
 public:
  explicit RuntimeDir(const char* prefix) {
    const char* tmp = std::getenv("TMPDIR");
    std::string t = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
    std::vector<char> buf(t.begin(), t.end());
    buf.push_back(0);
    if (!::mkdtemp(buf.data())) throw_errno("create a runtime directory in " + t);
    path_ = buf.data();
  }
  ~RuntimeDir() {
    try {
      remove_tree(path_);
    } catch (...) {
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

client::InvokeRequest request_for(const TemplateInfo& t, std::string payload, uint64_t timeout_ms) {
  client::InvokeRequest req;
  req.payload = std::move(payload);
  req.timeout_ms = timeout_ms;
  req.handler.name = t.name;
  if (t.mode == "worker") {
    req.mode = client::InvokeMode::kWorker;
  } else {
    req.handler.argv = t.argv;
    req.handler.env = t.env;
  }
  return req;
}

std::string describe_failure(const client::InvokeResult& r) {
  if (r.timed_out) return "timed out";
  if (!r.limit_exceeded.empty()) return "exceeded its " + r.limit_exceeded + " limit";
  if (r.signaled) return "killed by signal " + std::to_string(r.signal);
  if (r.exit_code != 0)
    return "exited with status " + std::to_string(r.exit_code) +
           (r.err.empty() ? "" : ": " + r.err.substr(0, 500));
  return "";
}

int create(int argc, char** argv, unsigned long long t0_ns) {
  if (argc < 2) return usage_error("template", "create: expected a template NAME");
  if (!std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  TemplateInfo t;
  t.name = argv[1];
  t.mem_mib = 256;
  std::string handler, warmup_payload_file, kernel, initrd, rootfs, cmdline, console = "none";
  std::vector<std::string> run_args;
  double boot_timeout_s = 120;
  bool timings = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(a + ": expected a value");
      return argv[++i];
    };
    try {
      if (a == "--handler")
        handler = value();
      else if (a == "--mode") {
        t.mode = value();
        if (t.mode != "exec" && t.mode != "worker") throw Error("--mode: expected exec or worker");
      } else if (a == "--warmup") {
        std::string v = value();
        char* end = nullptr;
        long n = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end || n < 0 || n > 10000) throw Error("--warmup: expected 0..10000");
        t.warmup = static_cast<uint32_t>(n);
      } else if (a == "--warmup-payload")
        warmup_payload_file = value();
      else if (a == "--env") {
        std::string v = value();
        if (v.find('=') == std::string::npos || v[0] == '=')
          throw Error("--env: expected KEY=VALUE");
        t.env.push_back(v);
      } else if (a == "--boot-timeout") {
        boot_timeout_s = std::strtod(value().c_str(), nullptr);
        if (boot_timeout_s <= 0) throw Error("--boot-timeout: expected seconds > 0");
      } else if (a == "--timings")
        timings = true;
      else if (a == "--kernel")
        kernel = value();
      else if (a == "--initrd")
        initrd = value();
      else if (a == "--rootfs")
        rootfs = value();
      else if (a == "--cmdline")
        cmdline = value();
      else if (a == "--console")
        console = value();
      else if (a == "--mem") {
        std::string v = value();
        char* end = nullptr;
        long n = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end || n < 16 || n > 65536)
          throw Error("--mem: expected MiB between 16 and 65536");
        t.mem_mib = static_cast<uint64_t>(n);
      } else if (a == "--vcpus") {
        std::string v = value();
        char* end = nullptr;
        long n = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end || n < 1 || n > 254) throw Error("--vcpus: expected 1..254");
        t.vcpus = static_cast<uint32_t>(n);
      } else if (a == "--drive")
        run_args.insert(run_args.end(), {a, value()});
      else if (a == "--no-rng")
        run_args.push_back(a);
      else
        throw Error("unknown option '" + a + "'");
    } catch (const Error& e) {
      return usage_error("template", std::string("create: ") + e.what());
    }
  }
  try {
    check_template_name(t.name);
    if (handler.empty()) throw Error("--handler \"CMD ARGS\" is required");
    t.argv = split_command(handler);
    if (t.argv.empty()) throw Error("--handler: empty command");
  } catch (const Error& e) {
    return usage_error("template", std::string("create: ") + e.what());
  }
  if (!initrd.empty() && !rootfs.empty())
    return usage_error("template", "create: --initrd and --rootfs conflict");
  if (initrd.empty() && rootfs.empty()) initrd = self_dir() + "/../guest/agent-initramfs.cpio.gz";
  for (const std::string* f : {&initrd, &rootfs, &kernel}) {
    struct stat st;
    if (!f->empty() && ::stat(f->c_str(), &st) != 0) {
      std::fprintf(stderr, "wisp template create: %s: %s (build the guest with make)\n", f->c_str(),
                   std::strerror(errno));
      return kExitError;
    }
  }
  t.guest = (kernel.empty() ? std::string("default kernel") : kernel) + ", " +
            (rootfs.empty() ? "initrd " + initrd : "rootfs " + rootfs);

  std::string final_dir = templates_dir() + "/" + t.name;
  std::string tmp_dir;
  try {
    struct stat st;
    if (::stat(final_dir.c_str(), &st) == 0)
      throw Error("template " + t.name + " already exists (wisp template rm " + t.name + ")");
    make_dirs(templates_dir());
    std::string tmpl = templates_dir() + "/." + t.name + ".tmp-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back(0);
    if (!::mkdtemp(buf.data())) throw_errno("create " + tmpl);
    tmp_dir = buf.data();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp template create: %s\n", e.what());
    return kExitError;
  }

  double boot_ms = 0, warmup_ms = 0, snapshot_ms = 0;
  try {
    RuntimeDir rt("wisp-template");
    std::string sock = rt.path() + "/vsock.sock", ctl = rt.path() + "/control.sock";
    std::vector<std::string> args = {"run",
                                     "--vsock-uds",
                                     sock,
                                     "--control-socket",
                                     ctl,
                                     "--console",
                                     console,
                                     "--mem",
                                     std::to_string(t.mem_mib),
                                     "--vcpus",
                                     std::to_string(t.vcpus)};
    if (!kernel.empty()) args.insert(args.end(), {"--kernel", kernel});
    if (!initrd.empty()) args.insert(args.end(), {"--initrd", initrd});
    if (!rootfs.empty()) args.insert(args.end(), {"--rootfs", rootfs});
    args.insert(args.end(), {"--cmdline", "quiet" + (cmdline.empty() ? "" : " " + cmdline)});
    args.insert(args.end(), run_args.begin(), run_args.end());
    std::fprintf(stderr, "wisp template create: booting %s (%llu MiB, %u vCPU)...\n",
                 t.name.c_str(), static_cast<unsigned long long>(t.mem_mib), t.vcpus);
    VmmChild vmm(args, rt.path() + "/vmm.log", false);

    client::ConnectOptions co;
    co.uds_path = sock;
    co.deadline = std::chrono::milliseconds(static_cast<int64_t>(boot_timeout_s * 1000));
    co.keep_trying = [&vmm] { return vmm.alive(); };
    std::unique_ptr<client::AgentClient> agent;
    try {
      agent = client::AgentClient::connect(co);
      agent->ping();
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "\nVMM log:\n" + vmm.log_tail());
    }
    boot_ms = ms_since(t0_ns);
    client::Handler h;
    h.name = t.name;
    h.argv = t.argv;
    h.env = t.env;
    if (t.mode == "worker") {
      std::fprintf(stderr, "wisp template create: starting the worker: %s\n", handler.c_str());
      agent->start_worker(h);
    }
    if (t.warmup > 0) {
      std::string payload = warmup_payload_file.empty() ? "" : read_file(warmup_payload_file);
      std::fprintf(stderr, "wisp template create: %u warm-up invocation(s)...\n", t.warmup);
      for (uint32_t i = 0; i < t.warmup; ++i) {
        client::InvokeResult r = agent->invoke(request_for(t, payload, 60000));
        std::string why = describe_failure(r);
        if (!why.empty()) throw Error("warm-up invocation " + std::to_string(i + 1) + " " + why);
      }
    }
    warmup_ms = ms_since(t0_ns) - boot_ms;
    agent->prepare_snapshot();
    // Close our connection and let the guest go idle before pausing it: whatever it is in
    // the middle of at the snapshot (tearing down this RPC connection, deferred kernel work)
    // every clone would redo after its restore, paying for each page it touches.
    agent.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(kSettleMs));
    std::fprintf(stderr, "wisp template create: snapshotting...\n");
    std::string reply = control_request(ctl, "snapshot " + tmp_dir + "/snapshot");
    if (reply.rfind("ok ", 0) != 0)
      throw Error("snapshot failed: " + (reply.rfind("error ", 0) == 0 ? reply.substr(6) : reply));
    snapshot_ms = json_number(reply, "total_ms");
    t.snapshot_ms = snapshot_ms;
    t.memory_file_bytes = static_cast<uint64_t>(json_number(reply, "memory_file_bytes"));
    t.memory_disk_bytes = static_cast<uint64_t>(json_number(reply, "memory_disk_bytes"));
    vmm.kill_now();

    t.created_unix = static_cast<int64_t>(::time(nullptr));
    std::string info_path = tmp_dir + "/template.info";
    {
      std::ofstream out(info_path);
      out << format_template_info(t);
      if (!out.flush()) throw Error("cannot write " + info_path);
    }
    int fd = ::open(info_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) != 0)
      throw_errno("rename " + tmp_dir + " to " + final_dir);
    tmp_dir.clear();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp template create: %s\n", e.what());
    if (!tmp_dir.empty()) {
      try {
        remove_tree(tmp_dir);
      } catch (...) {
      }
    }
    return kExitError;
  }
  std::fprintf(stderr,
               "wisp template create: template %s ready in %.1f s (snapshot %.0f ms; memory "
               "file %.1f MiB on disk of %llu MiB)\n",
               t.name.c_str(), ms_since(t0_ns) / 1000, snapshot_ms,
               static_cast<double>(t.memory_disk_bytes) / (1 << 20),
               static_cast<unsigned long long>(t.memory_file_bytes >> 20));
  if (timings)
    std::fprintf(stderr,
                 "{\"boot_ms\":%.3f,\"warmup_ms\":%.3f,\"snapshot_ms\":%.3f,"
                 "\"memory_file_bytes\":%llu,\"memory_disk_bytes\":%llu,\"total_ms\":%.3f}\n",
                 boot_ms, warmup_ms, snapshot_ms,
                 static_cast<unsigned long long>(t.memory_file_bytes),
                 static_cast<unsigned long long>(t.memory_disk_bytes), ms_since(t0_ns));
  return kExitOk;
}

int list() {
  std::string dir = templates_dir();
  DIR* d = ::opendir(dir.c_str());
  std::vector<std::string> names;
  if (d) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::printf("%-24s %-7s %8s %10s  %s\n", "NAME", "MODE", "MEM", "ON DISK", "HANDLER");
  for (const auto& n : names) {
    try {
      TemplateInfo t = read_template(n);
      std::string cmd;
      for (const auto& a : t.argv) cmd += (cmd.empty() ? "" : " ") + a;
      std::printf("%-24s %-7s %5llu MiB %6.1f MiB  %s\n", n.c_str(), t.mode.c_str(),
                  static_cast<unsigned long long>(t.mem_mib),
                  static_cast<double>(t.memory_disk_bytes) / (1 << 20), cmd.c_str());
    } catch (const Error& e) {
      std::printf("%-24s (unreadable: %s)\n", n.c_str(), e.what());
    }
  }
  return kExitOk;
}

int remove(int argc, char** argv) {
  if (argc != 2) return usage_error("template", "rm: expected one template NAME");
  try {
    check_template_name(argv[1]);
    std::string dir = templates_dir() + "/" + argv[1];
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0)
      throw Error("template " + std::string(argv[1]) + ": not found");
    // Rename first so a concurrent invoke sees it either whole or gone.
    std::string doomed = templates_dir() + "/." + argv[1] + ".rm-" + std::to_string(::getpid());
    if (::rename(dir.c_str(), doomed.c_str()) != 0) throw_errno("rename " + dir);
    remove_tree(doomed);
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp template rm: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}

}  // namespace

int template_command(int argc, char** argv, unsigned long long t0_ns) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? kExitUsage : kExitOk;
  }
  std::string sub = argv[1];
  if (sub == "create") return create(argc - 1, argv + 1, t0_ns);
  if (sub == "ls" || sub == "list") return list();
  if (sub == "rm") return remove(argc - 1, argv + 1);
  return usage_error("template", "unknown command '" + sub + "' (create, ls, rm)");
}

int invoke_command(int argc, char** argv, unsigned long long t0_ns) {
  std::string name, payload_arg;
  double timeout_s = 30;
  bool timings = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kInvokeUsage, stdout);
      return kExitOk;
    } else if (a == "--payload" && i + 1 < argc) {
      payload_arg = argv[++i];
    } else if (a == "--timeout" && i + 1 < argc) {
      timeout_s = std::strtod(argv[++i], nullptr);
      if (timeout_s <= 0) return usage_error("invoke", "--timeout: expected seconds > 0");
    } else if (a == "--timings") {
      timings = true;
    } else if (!a.empty() && a[0] != '-' && name.empty()) {
      name = a;
    } else {
      return usage_error("invoke", "unknown or incomplete option '" + a + "'");
    }
  }
  if (name.empty()) return usage_error("invoke", "expected a template NAME");
  TemplateInfo t;
  std::string payload;
  try {
    t = read_template(name);
    if (payload_arg == "-")
      payload = read_all_fd(0);
    else if (!payload_arg.empty())
      payload = read_file(payload_arg);
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp invoke: %s\n", e.what());
    return kExitError;
  }
  double restore_ms = 0, connect_ms = 0, reconnect_ms = 0, invoke_ms = 0, total_ms = 0;
  long long pages_touched = -1;
  client::InvokeResult r;
  try {
    RuntimeDir rt("wisp-invoke");
    std::string sock = rt.path() + "/vsock.sock", ctl = rt.path() + "/control.sock";
    std::vector<std::string> args = {
        "snapshot",  "restore", templates_dir() + "/" + name + "/snapshot", "--vsock-uds", sock,
        "--console", "none"};
    if (timings) args.insert(args.end(), {"--control-socket", ctl});
    VmmChild vmm(args, rt.path() + "/vmm.log", true);
    try {
      vmm.wait_ready(std::chrono::milliseconds(30000));
      restore_ms = ms_since(t0_ns);
      client::ConnectOptions co;
      co.uds_path = sock;
      co.deadline = std::chrono::milliseconds(30000);
      co.keep_trying = [&vmm] { return vmm.alive(); };
      co.confirm = true;  // the clone resets its vsock transport as it resumes
      auto agent = client::AgentClient::connect(co);
      connect_ms = ms_since(t0_ns) - restore_ms;
      std::string entropy(64, '\0');
      if (getentropy(entropy.data(), entropy.size()) != 0) throw_errno("getentropy");
      timespec now;
      clock_gettime(CLOCK_REALTIME, &now);
      agent->resumed(entropy, now.tv_sec * 1000000000ll + now.tv_nsec);
      reconnect_ms = ms_since(t0_ns) - restore_ms;
      r = agent->invoke(
          request_for(t, std::move(payload), static_cast<uint64_t>(timeout_s * 1000)));
      total_ms = ms_since(t0_ns);
      invoke_ms = total_ms - restore_ms - reconnect_ms;
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + (vmm.alive() ? "" : "\nVMM log:\n" + vmm.log_tail()));
    }
    if (timings) {
      try {
        std::string stats = control_request(ctl, "stats");
        pages_touched = static_cast<long long>(json_number(stats, "resident_pages"));
      } catch (const Error&) {
      }
    }
    vmm.kill_now();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp invoke: %s\n", e.what());
    return 126;
  }
  if (::write(1, r.out.data(), r.out.size()) < 0) {
  }
  if (::write(2, r.err.data(), r.err.size()) < 0) {
  }
  if (timings)
    std::fprintf(stderr,
                 "{\"restore_ms\":%.3f,\"reconnect_ms\":%.3f,\"connect_ms\":%.3f,"
                 "\"invoke_ms\":%.3f,\"total_ms\":%.3f,\"pages_touched\":%lld}\n",
                 restore_ms, reconnect_ms, connect_ms, invoke_ms, total_ms, pages_touched);
  if (r.timed_out) {
    std::fprintf(stderr, "wisp invoke: the handler ran past its %g s timeout\n", timeout_s);
    return 124;
  }
  if (!r.limit_exceeded.empty() || r.output_truncated) {
    std::fprintf(stderr, "wisp invoke: the handler exceeded its %s limit\n",
                 r.limit_exceeded.empty() ? "output" : r.limit_exceeded.c_str());
    return 125;
  }
  if (r.signaled) return 128 + r.signal;
  return r.exit_code;
}

}  // namespace wisp
