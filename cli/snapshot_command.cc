#include "cli/snapshot_command.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "cli/control_handler.h"
#include "cli/run_command.h"
#include "snapshot/machine_snapshot.h"
#include "snapshot/snapshot_dir.h"
#include "base/error.h"
#include "base/log.h"
#include "vmm/kvm/kvm.h"
#include "vmm/machine/machine.h"
#include "vmm/virtio/vsock/vsock_muxer.h"

namespace wisp {
namespace {

constexpr const char* kUsage = R"(Usage: wisp snapshot COMMAND ...

  create --control-socket PATH [--diff] DIR
      Snapshot the VM whose VMM listens on PATH (wisp run/snapshot restore
      --control-socket) into the new directory DIR: it is paused, its vCPU, interrupt
      controller, clock and device state and its memory are written, then it resumes.
      --diff (a VM restored from a snapshot only): store only the pages written since
      the restore; DIR then needs its parent snapshot to restore. Prints the timings and
      sizes as JSON.
  restore DIR [--vsock-uds PATH] [--console stdio|none|FILE] [--control-socket PATH]
          [--timings] [--ready-fd N] [-v]
      Run a VM restored from the snapshot directory DIR, until it powers off or is
      stopped (exit status as for wisp run). Its memory is the snapshot's memory file
      mapped copy-on-write, so any number of clones share its pages. A VM that had
      virtio-vsock needs --vsock-uds (each clone its own socket); drives are reopened
      from the paths in the snapshot. --ready-fd N: write "ready LOADED_MS RESTORED_MS"
      to descriptor N once the VM is rebuilt, just before its vCPUs run.
  verify DIR [--memory-digest]
      Check a snapshot completely (state file frame, checksum, schema and values; the
      memory file against the layout; a diff's parents) and describe it. Exit 0 when
      valid, 1 with the reason otherwise. --memory-digest also prints a checksum of the
      guest memory it restores to (diff layers applied): a diff and a full snapshot of the
      same paused VM have the same digest.
)";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "wisp snapshot: %s\nTry 'wisp snapshot --help'.\n", msg.c_str());
  return kExitUsage;
}

std::string absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof(cwd))) throw_errno("getcwd");
  return std::string(cwd) + "/" + path;
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int create(int argc, char** argv) {
  std::string control;
  bool diff = false;
  static const option kOptions[] = {{"control-socket", required_argument, nullptr, 'c'},
                                    {"diff", no_argument, nullptr, 'd'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "h", kOptions, nullptr)) != -1) {
    if (c == 'c')
      control = optarg;
    else if (c == 'd')
      diff = true;
    else if (c == 'h') {
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else
      return usage_error(std::string("create: unknown or incomplete option '") + argv[optind - 1] +
                         "'");
  }
  if (control.empty()) return usage_error("create: --control-socket PATH is required");
  if (optind + 1 != argc) return usage_error("create: expected one snapshot directory");
  try {
    std::string reply = control_request(
        control, std::string("snapshot ") + (diff ? "--diff " : "") + absolute(argv[optind]));
    if (reply.rfind("ok", 0) != 0) {
      std::fprintf(stderr, "wisp snapshot create: %s\n",
                   reply.rfind("error ", 0) == 0 ? reply.c_str() + 6 : reply.c_str());
      return kExitError;
    }
    std::printf("%s\n", reply.size() > 3 ? reply.c_str() + 3 : "{}");
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp snapshot create: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}

int verify(int argc, char** argv) {
  if (argc == 2 && (!std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help"))) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  bool digest = argc == 3 && !std::strcmp(argv[2], "--memory-digest");
  if (argc == 3 && !std::strcmp(argv[1], "--memory-digest")) {
    digest = true;
    std::swap(argv[1], argv[2]);
  }
  if (argc != 2 && !digest) return usage_error("verify: expected one snapshot directory");
  std::string dir = argv[1];
  try {
    // Follow a diff's chain: each layer must verify, and be the parent its child was made on.
    std::string current = dir, expected_id, child;
    for (uint32_t depth = 0;; ++depth) {
      if (depth > snapshot::kMaxDiffDepth) throw Error(dir + ": too many diff layers");
      snapshot::SnapshotReport report = snapshot::verify_snapshot(current);
      if (!child.empty() && report.id != expected_id)
        throw Error(child + "/" + snapshot::kStateFileName + ": its parent " + current +
                    " is another snapshot (id " + report.id + ", expected " + expected_id + ")");
      std::printf("%s: ok\n%s", current.c_str(), report.to_string().c_str());
      if (report.parent_id.empty()) break;
      std::printf("diff layer over %s\n", report.parent_dir.c_str());
      child = current;
      expected_id = report.parent_id;
      current = report.parent_dir;
    }
    if (digest)
      std::printf("memory digest %016llx\n",
                  static_cast<unsigned long long>(snapshot::memory_digest(dir)));
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp snapshot verify: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}

int restore(int argc, char** argv, unsigned long long t0_ns) {
  MachineConfig cfg;
  std::string vsock_uds;
  bool timings = false;
  int verbose = 0, ready_fd = -1;
  static const option kOptions[] = {{"vsock-uds", required_argument, nullptr, 'u'},
                                    {"ready-fd", required_argument, nullptr, 'r'},
                                    {"console", required_argument, nullptr, 'C'},
                                    {"control-socket", required_argument, nullptr, 'c'},
                                    {"timings", no_argument, nullptr, 't'},
                                    {"verbose", no_argument, nullptr, 'v'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "vh", kOptions, nullptr)) != -1) {
    switch (c) {
      case 'u':
        vsock_uds = optarg;
        break;
      case 'C':
        if (!set_console(optarg, &cfg)) return usage_error("--console: empty value");
        break;
      case 'c':
        cfg.control_socket = optarg;
        break;
      case 'r': {
        char* end = nullptr;
        long v = std::strtol(optarg, &end, 10);
        if (!*optarg || *end || v < 3 || v > 1024)
          return usage_error("--ready-fd: expected a descriptor number >= 3");
        ready_fd = static_cast<int>(v);
        break;
      }
      case 't':
        timings = true;
        break;
      case 'v':
        ++verbose;
        break;
      case 'h':
        std::fputs(kUsage, stdout);
        return kExitOk;
      default:
        return usage_error(std::string("restore: unknown or incomplete option '") +
                           argv[optind - 1] + "'");
    }
  }
  if (optind + 1 != argc) return usage_error("restore: expected one snapshot directory");
  set_log_level(verbose >= 2 ? LogLevel::kDebug : verbose == 1 ? LogLevel::kInfo : LogLevel::kWarn);
  std::string dir = absolute(argv[optind]);
  if (int rc = check_kvm_usable()) return rc;

  RunResult r;
  uint64_t kvm_ns = 0, loaded_ns = 0, ready_ns = 0;
  try {
    Kvm kvm = Kvm::open(dev_kvm_path());
    kvm_ns = now_ns();
    snapshot::LoadedSnapshot snap = snapshot::load_machine_snapshot(
        dir, [&](uint32_t vcpus) { return guest_cpuid(kvm, 0, vcpus); });
    loaded_ns = now_ns();
    bool has_vsock = false;
    for (const VirtioSlotState& slot : snap.state.virtio) {
      cfg.devices.push_back(slot.spec);
      if (auto* vsock = std::get_if<VsockSpec>(&cfg.devices.back())) {
        if (vsock_uds.empty())
          throw Error(dir +
                      ": the snapshot has virtio-vsock: give the clone a socket with --vsock-uds "
                      "PATH");
        vsock->uds_path = vsock_uds;
        validate_vsock_config(*vsock);
        has_vsock = true;
      }
    }
    if (!has_vsock && !vsock_uds.empty())
      throw Error(dir + ": --vsock-uds given but the snapshot has no virtio-vsock device");
    if (!cfg.control_socket.empty()) cfg.control_handler = make_control_handler({dir, snap.id});
    auto machine = Machine::restore(cfg, snap.state, std::move(snap.memory), kvm, t0_ns);
    ready_ns = now_ns();
    if (ready_fd >= 0) {
      // The manager (wisp invoke) times the restore by this line; the vCPUs start next.
      char line[96];
      int n = snprintf(line, sizeof(line), "ready %.3f %.3f\n",
                       static_cast<double>(loaded_ns - t0_ns) / 1e6,
                       static_cast<double>(ready_ns - t0_ns) / 1e6);
      if (::write(ready_fd, line, static_cast<size_t>(n)) != n)
        LOG_WARN("--ready-fd: write failed");
      ::close(ready_fd);
    }
    LOG_INFO("restored %s (%u layer(s))", dir.c_str(), snap.layers);
    r = machine->run();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp: %s\n", e.what());
    return kExitError;
  }
  if (timings) {
    std::fprintf(
        stderr,
        "{\"kvm_open_ms\":%.3f,\"snapshot_loaded_ms\":%.3f,\"restored_ms\":%.3f,"
        "\"first_kvm_run_ms\":%.3f,\"exit_ms\":%.3f,\"stop\":\"%s\"}\n",
        static_cast<double>(kvm_ns - t0_ns) / 1e6, static_cast<double>(loaded_ns - t0_ns) / 1e6,
        static_cast<double>(ready_ns - t0_ns) / 1e6, static_cast<double>(r.first_run_us) / 1000.0,
        static_cast<double>(r.exit_us) / 1000.0, stop_reason_name(r.reason));
  }
  return exit_code_for(r);
}

}  // namespace

int snapshot_command(int argc, char** argv, unsigned long long t0_ns) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? kExitUsage : kExitOk;
  }
  std::string sub = argv[1];
  if (sub == "create") return create(argc - 1, argv + 1);
  if (sub == "restore") return restore(argc - 1, argv + 1, t0_ns);
  if (sub == "verify") return verify(argc - 1, argv + 1);
  return usage_error("unknown command '" + sub + "' (create, restore, verify)");
}

}  // namespace wisp
