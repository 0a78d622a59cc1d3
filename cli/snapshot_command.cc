// `wisp snapshot create|restore|verify`: the raw snapshot operations on one VM. create and
// verify call the manager (manager/snapshot_ops.h); restore is the VMM itself (wisp-vmm).
#include <cinttypes>
#include <cstdio>
#include <string>

#include "base/exit_codes.h"
#include "base/options.h"
#include "cli/commands.h"
#include "manager/snapshot_ops.h"

namespace wisp::cli {
namespace {

constexpr const char* kCommand = "wisp snapshot";
constexpr const char* kUsage = R"(Usage: wisp snapshot COMMAND ...

  create --control-socket PATH [--diff] DIR
      Snapshot the VM whose VMM listens on PATH (wisp run/snapshot restore
      --control-socket) into the new directory DIR: it is paused, its vCPU, interrupt
      controller, clock and device state and its memory are written, then it resumes.
      --diff (a VM restored from a snapshot only): store only the pages written since
      the restore; DIR then needs its parent snapshot to restore. Prints the timings and
      sizes as JSON.
  restore DIR [--drive PATH[,ro]]... [--net tap=NAME]... [--vsock-uds PATH]
          [--console stdio|none|FILE] [--control-socket PATH] [--timings] [--ready-fd N] [-v]
      Run a VM restored from the snapshot directory DIR, until it powers off or is
      stopped (exit status as for wisp run). A snapshot's drives are given again with
      --drive (in its order) unless they lie inside DIR; its NICs reopen the TAPs they
      were on unless --net names others. 'wisp snapshot restore --help' has the details.
  verify DIR [--memory-digest]
      Check a snapshot completely (state file frame, checksum, schema and values; the
      memory file against the layout; a diff's parents) and describe it. Exit 0 when
      valid, 1 with the reason otherwise. --memory-digest also prints a checksum of the
      guest memory it restores to (diff layers applied): a diff and a full snapshot of the
      same paused VM have the same digest.
)";

// Parses one subcommand's options; false for --help (printed). Throws UsageError.
bool parse_one_dir(OptionParser& p, int argc, char** argv, std::string* dir) {
  OptionParser::Result args = p.parse(argc, argv);
  if (args.help) {
    std::fputs(kUsage, stdout);
    return false;
  }
  if (args.operands.size() != 1 || args.dashdash)
    throw UsageError("expected one snapshot directory");
  *dir = args.operands[0];
  return true;
}

void print_json(const control::SnapshotReport& s) {
  std::printf(
      "{\"pause_ms\":%.3f,\"state_ms\":%.3f,\"memory_ms\":%.3f,\"total_ms\":%.3f,"
      "\"memory_file_bytes\":%" PRIu64 ",\"memory_disk_bytes\":%" PRIu64
      ",\"pages_written\":%" PRIu64 ",\"pages_in_layer\":%" PRIu64 ",\"diff\":%s,\"id\":\"%s\"}\n",
      s.pause_ms, s.state_ms, s.memory_ms, s.total_ms, s.memory_file_bytes, s.memory_disk_bytes,
      s.pages_written, s.pages_in_layer, s.diff ? "true" : "false", s.id.c_str());
}

int create(int argc, char** argv) {
  std::string control, dir;
  bool diff = false;
  try {
    OptionParser p("wisp snapshot create");
    p.text("control-socket", &control).flag("diff", &diff);
    if (!parse_one_dir(p, argc, argv, &dir)) return kExitOk;
    if (control.empty()) throw UsageError("--control-socket PATH is required");
  } catch (const UsageError& e) {
    return usage_error("wisp snapshot create", e.what());
  }
  try {
    print_json(manager::create_snapshot(control, dir, diff));
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp snapshot create: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}

int verify(int argc, char** argv) {
  std::string dir;
  bool digest = false;
  try {
    OptionParser p("wisp snapshot verify");
    p.flag("memory-digest", &digest);
    if (!parse_one_dir(p, argc, argv, &dir)) return kExitOk;
  } catch (const UsageError& e) {
    return usage_error("wisp snapshot verify", e.what());
  }
  try {
    manager::verify_snapshot_chain(dir, [](const manager::SnapshotLayer& layer) {
      std::printf("%s: ok\n%s", layer.dir.c_str(), layer.description.c_str());
      if (!layer.parent_dir.empty()) std::printf("diff layer over %s\n", layer.parent_dir.c_str());
    });
    if (digest) std::printf("memory digest %016" PRIx64 "\n", manager::snapshot_memory_digest(dir));
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp snapshot verify: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}

}  // namespace

int snapshot_command(int argc, char** argv, uint64_t t0_ns) {
  auto restore = [t0_ns](int n, char** a) { return exec_vmm("restore", n, a, t0_ns); };
  return run_subcommand(kCommand, kUsage, argc, argv,
                        {{"create", create}, {"restore", restore}, {"verify", verify}});
}

}  // namespace wisp::cli
