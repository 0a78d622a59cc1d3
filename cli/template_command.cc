// `wisp template create|ls|rm`: functions as warmed snapshots in the template store
// (manager/template_store.h, manager/template_create.h).
#include <cstdio>
#include <string>
#include <vector>

#include "api/jail_flags.h"
#include "base/clock.h"
#include "base/exit_codes.h"
#include "base/file_io.h"
#include "base/options.h"
#include "cli/commands.h"
#include "cli/common_options.h"
#include "cli/serve_client.h"
#include "cli/signal_watch.h"
#include "manager/cancellation.h"
#include "manager/template_create.h"
#include "manager/template_rebuild.h"
#include "manager/template_store.h"

namespace wisp::cli {
namespace {

using std::chrono::milliseconds;

constexpr const char* kCommand = "wisp template";
constexpr const char* kUsage = R"(Usage: wisp template COMMAND ...

  create NAME --handler "CMD ARGS" [--mode exec|worker] [--warmup N]
         [--warmup-payload FILE] [--env KEY=VALUE]... [--boot-timeout S] [--timings]
         [--rebuild] [--network] [--no-criu] [--server PATH] [VM options]
      Boot a function VM, start its handler, warm it up and snapshot it as template NAME.
      exec mode: each invocation runs CMD afresh in the sandbox. worker mode: CMD is started
      now as a warm worker (api/worker_protocol.md) and its initialisation (imports, model
      loading) is in the snapshot. --warmup N: invoke N times (default 1, 0 to 10000;
      payload: --warmup-payload, or empty) before the snapshot, so the paths a call takes
      are warm in it; a failing warm-up call fails the creation with the handler's stderr.
      Then the agent syncs (prepareSnapshot) and the VM is snapshotted and destroyed,
      and one probe clone of the snapshot makes a first call (the warm-up payload): the
      pages it touched are the template's working set, which every restore prefetches.
      --warmup 0: the handler is not called while the template is made (no probe either).
      --mem defaults to 256 MiB here. --timings prints a JSON line to stderr: boot_ms,
      warmup_ms, snapshot_ms (pause + save of the snapshot), memory_file_bytes,
      memory_disk_bytes, total_ms. --rebuild: replace template NAME if it exists; calls
      in flight finish on the old one, later calls get the new one. --server PATH (or the
      WISP_SERVER environment variable): a running `wisp serve` creates it, in its store,
      from files under the directories it allows (same output; --kernel, --initrd, --rootfs,
      --drive, --mem and --vcpus carry over, other VM options are refused).
      --net tap=NAME[,...]: the template records its NICs and every clone (invoke, serve,
      sandbox forks) restores on the same TAP NAME, opened before the clone's jail, with
      the guest's MAC and address as they were; one clone at a time can hold a TAP.
      --net (bare, with --allow CIDR[:PORT] and --dns ADDR): every clone gets a network
      namespace of its own made as the template's was, the same addresses inside, its
      own veth and NAT, the template's allow-list: any number of clones at once.
      --network: the handler uses the guest's network (default: an empty namespace).
      Worker mode: after the warm-up the agent also checkpoints the warm worker with CRIU
      in the guest (a root filesystem with criu: the Python one) and the image is kept
      beside the snapshot (snapshot/criu-image.wci): a fallback that does not depend on the
      host CPU or the snapshot format (issue 17). A failed dump only warns (no criu in the
      guest: the agent initramfs); the template is made without an image. --no-criu: skip
      the dump (1.4 s of an 8 s creation in the nested testbed, more on a loaded host).
      --portable: the guest runs on a baseline CPU (nothing beyond x86-64-v2: no AVX, FMA,
      BMI, XSAVE...); template.info records it, the snapshot records the CPUID the guest
      saw, and clones restore with the same baseline.
  rebuild NAME [--timings] [jail options]
      Re-make worker template NAME's VM snapshot for this host from its CRIU image (after a
      CPU change, a wisp or guest kernel upgrade): its guest boots cold (its kernel, rootfs,
      drives, network and machine size as template.info records them; the baseline CPU if
      it is --portable), the agent restores the warm worker from the image (its
      initialisation does not run again), and a fresh VM snapshot replaces the old one
      atomically (calls in flight finish on the old one; nothing changes on failure). The
      CRIU image is kept; the new snapshot's working set is recorded by a probe clone's call
      with an empty payload (when that call fails: a warning, and no working set). One
      rebuild of a template at a time. `wisp invoke` starts one in the background by itself
      when it had to fall back to the image. --timings prints a JSON line to stderr: boot_ms,
      criu_restore_ms, criu_guest_ms, snapshot_ms, criu_image_bytes, working_set_pages,
      total_ms.
  ls
      List the templates: name, mode, memory, snapshot size on disk, handler.
  rm NAME
      Delete template NAME.

The store is $WISP_HOME/templates (WISP_HOME defaults to /var/lib/wisp).

)";

// The VM options a TemplateSpec of api/wisp.capnp cannot carry: refused with --server rather
// than silently dropped.
void check_serve_spec(const manager::TemplateSpec& spec) {
  const manager::VmSpec& vm = spec.vm;
  // wisp serve's TemplateSpec (api/wisp.capnp) has no NICs yet.
  const char* option = !vm.nets.empty() || vm.network.own      ? "--net"
                       : !vm.network.dns.empty()               ? "--dns"
                       : spec.network                          ? "--network"
                       : !spec.criu_image                      ? "--no-criu"
                       : !vm.cmdline.empty() || vm.raw_cmdline ? "--cmdline"
                       : !vm.rng                               ? "--no-rng"
                       : !vm.huge_pages                        ? "--no-hugepages"
                       : vm.portable                           ? "--portable"
                       : !vm.vsock_cid.empty()                 ? "--vsock-cid"
                       : vm.console != "none"                  ? "--console"
                       : vm.verbose                            ? "--verbose"
                       : !vm.jail.jail || !vm.jail.cgroup || vm.jail.uid_first ||
                               vm.jail.cpu_quota_percent || vm.jail.memory_max
                           ? "jail options"
                           : nullptr;
  if (option)
    throw UsageError(std::string(option) +
                     " cannot be sent to wisp serve (--server/WISP_SERVER); drop it or create "
                     "the template standalone");
}

void print_created(const manager::TemplateInfo& t, double snapshot_ms, double boot_ms,
                   double warmup_ms, bool timings, uint64_t t0_ns) {
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
}

int create_through_serve(const std::string& server, const manager::TemplateSpec& spec,
                         const std::string& warmup_file, bool timings, uint64_t t0_ns) {
  // SIGINT/SIGTERM/SIGHUP drop the call: serve kills the VM and publishes nothing.
  SignalWatch watch([](int) {}, milliseconds(5000));
  ServeTemplateCreated out;
  try {
    manager::TemplateSpec sent = spec;
    if (!warmup_file.empty()) sent.warmup_payload = read_file(warmup_file);
    auto serve = ServeClient::connect(server, watch.cancel_fd());
    out = serve->create_template(sent, [](const std::string& m) {
      std::fprintf(stderr, "wisp template create: %s\n", m.c_str());
    });
  } catch (const ServeError& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    std::fprintf(stderr, "wisp template create: %s\n", e.what());
    return kExitError;
  } catch (const Error& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    std::fprintf(stderr, "wisp template create: %s\n", e.what());
    return kExitError;
  }
  print_created(out.info, out.info.snapshot_ms, out.boot_ms, out.warmup_ms, timings, t0_ns);
  return kExitOk;
}

int create(int argc, char** argv, uint64_t t0_ns) {
  manager::TemplateSpec spec;
  std::string handler, warmup_file, server;
  bool timings = false, no_criu = false;
  try {
    OptionParser p("wisp template create");
    add_vm_options(p, &spec.vm);
    add_env_option(p, &spec.env);
    add_mode_option(p, &spec.mode);
    p.flag("network", &spec.network);
    p.flag("no-criu", &no_criu);
    p.text("handler", &handler)
        .count("warmup", &spec.warmup, 0, 10000)
        .text("warmup-payload", &warmup_file)
        .duration("boot-timeout", &spec.boot_timeout, milliseconds(1), milliseconds(7 * 86400000))
        .flag("timings", &timings)
        .flag("rebuild", &spec.rebuild);
    add_server_option(p, &server);
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::printf("%s%s", kUsage, vm_options_help().c_str());
      return kExitOk;
    }
    if (args.operands.size() != 1 || args.dashdash) throw UsageError("expected a template NAME");
    spec.name = args.operands[0];
    check_vm_options(spec.vm);
    manager::check_template_name(spec.name);
    if (handler.empty()) throw UsageError("--handler \"CMD ARGS\" is required");
    spec.argv = manager::split_command(handler);
    if (spec.argv.empty()) throw UsageError("--handler: empty command");
    if (!spec.vm.initrd.empty() && !spec.vm.rootfs.empty())
      throw UsageError("--initrd and --rootfs conflict");
    if (no_criu && spec.mode != "worker") throw UsageError("--no-criu needs --mode worker");
    spec.criu_image = !no_criu;
    server = server_socket(server);
    if (!server.empty()) check_serve_spec(spec);
  } catch (const Error& e) {
    return usage_error("wisp template create", e.what());
  }
  spec.start_ns = t0_ns;
  if (!server.empty()) return create_through_serve(server, spec, warmup_file, timings, t0_ns);
  // SIGINT/SIGTERM/SIGHUP kill the VM; creation then fails and unwinds (VMM reaped, runtime
  // directory and staging removed) and the command exits 128+N.
  manager::Cancellation cancel;
  SignalWatch watch([&cancel](int) { cancel.cancel(); }, milliseconds(5000));
  manager::TemplateCreated out;
  try {
    if (!warmup_file.empty()) spec.warmup_payload = read_file(warmup_file);
    out = manager::create_template(
        spec,
        [](const std::string& m) { std::fprintf(stderr, "wisp template create: %s\n", m.c_str()); },
        &cancel);
  } catch (const Error& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    std::fprintf(stderr, "wisp template create: %s\n", e.what());
    return kExitError;
  }
  print_created(out.info, out.snapshot_ms, out.boot_ms, out.warmup_ms, timings, t0_ns);
  return kExitOk;
}

int rebuild(int argc, char** argv, uint64_t t0_ns) {
  constexpr const char* kRebuild = "wisp template rebuild";
  manager::RebuildOptions options;
  bool timings = false;
  std::string name;
  try {
    OptionParser p(kRebuild);
    p.flag("timings", &timings)
        .text("if-generation", &options.only_generation)  // invoke's background re-make
        .flag("skip-if-busy", &options.skip_if_busy)
        .duration("boot-timeout", &options.boot_timeout, milliseconds(1),
                  milliseconds(7 * 86400000));
    add_jail_options(p, &options.jail);
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::printf("%sJail options of wisp template rebuild's VMM (see wisp run --help):\n%s",
                  kUsage, kJailOptionsHelp);
      return kExitOk;
    }
    if (args.operands.size() != 1 || args.dashdash) throw UsageError("expected a template NAME");
    name = args.operands[0];
    manager::check_template_name(name);
  } catch (const Error& e) {
    return usage_error(kRebuild, e.what());
  }
  options.start_ns = t0_ns;
  // SIGINT/SIGTERM/SIGHUP kill the VM; the rebuild unwinds and the template stays as it was.
  manager::Cancellation cancel;
  SignalWatch watch([&cancel](int) { cancel.cancel(); }, milliseconds(5000));
  manager::TemplateRebuilt out;
  try {
    out = manager::rebuild_template(
        name, options,
        [](const std::string& m) {
          std::fprintf(stderr, "wisp template rebuild: %s\n", m.c_str());
        },
        &cancel);
  } catch (const Error& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    std::fprintf(stderr, "wisp template rebuild: %s\n", e.what());
    return kExitError;
  }
  if (!out.skipped.empty()) {
    std::fprintf(stderr, "wisp template rebuild: nothing done: %s\n", out.skipped.c_str());
    return kExitOk;
  }
  std::fprintf(stderr,
               "wisp template rebuild: template %s rebuilt in %.1f s (snapshot %.0f ms; memory "
               "file %.1f MiB on disk)\n",
               name.c_str(), out.total_ms / 1000, out.snapshot_ms,
               static_cast<double>(out.info.memory_disk_bytes) / (1 << 20));
  if (timings)
    std::fprintf(stderr,
                 "{\"boot_ms\":%.3f,\"criu_restore_ms\":%.3f,\"criu_guest_ms\":%.3f,"
                 "\"snapshot_ms\":%.3f,\"criu_image_bytes\":%llu,\"working_set_pages\":%llu,"
                 "\"total_ms\":%.3f}\n",
                 out.boot_ms, out.criu_ms, out.criu_guest_ms, out.snapshot_ms,
                 static_cast<unsigned long long>(out.criu_image_bytes),
                 static_cast<unsigned long long>(out.working_set_pages), out.total_ms);
  return kExitOk;
}

int list() {
  std::vector<std::string> names;
  try {
    names = manager::template_names();
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp template ls: %s\n", e.what());
    return kExitError;
  }
  std::printf("%-24s %-7s %8s %10s  %s\n", "NAME", "MODE", "MEM", "ON DISK", "HANDLER");
  for (const auto& n : names) {
    try {
      manager::TemplateInfo t = manager::read_template(n);
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

int remove_template(int argc, char** argv) {
  if (argc != 2) return usage_error("wisp template rm", "expected one template NAME");
  try {
    manager::remove_template(argv[1]);
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp template rm: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}

}  // namespace

int template_command(int argc, char** argv, uint64_t t0_ns) {
  std::string usage = std::string(kUsage) + vm_options_help();
  return run_subcommand(kCommand, usage, argc, argv,
                        {{"create", [t0_ns](int n, char** a) { return create(n, a, t0_ns); }},
                         {"rebuild", [t0_ns](int n, char** a) { return rebuild(n, a, t0_ns); }},
                         {"ls", [](int, char**) { return list(); }},
                         {"list", [](int, char**) { return list(); }},
                         {"rm", remove_template}});
}

}  // namespace wisp::cli
