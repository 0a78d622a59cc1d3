#include "manager/template_create.h"

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

#include "base/clock.h"
#include "base/error.h"
#include "base/file_io.h"
#include "manager/criu_drive.h"
#include "manager/criu_image_store.h"
#include "manager/invoke.h"
#include "manager/snapshot_ops.h"
#include "manager/working_set_probe.h"

namespace wisp::manager {
namespace {

// How long a template VM idles between its last RPC and the snapshot.
constexpr std::chrono::milliseconds kSettle{500};
constexpr uint64_t kDefaultMemBytes = 256ull << 20;
constexpr uint64_t kWarmupTimeoutMs = 60000;
// A worker's first call also waits for its start (imports, model set-up: ml_worker.py's
// numpy and scikit-learn imports and training take over a minute in the nested testbed).
constexpr uint64_t kWorkerStartTimeoutMs = 15 * 60000;

// The VM's drives in slot order (the rootfs first, as wisp-vmm run attaches it), as restore is
// to be given them: resolved, since a clone may start from another directory.
std::vector<std::string> template_drives(const VmSpec& vm) {
  std::vector<std::string> out;
  if (!vm.rootfs.empty()) out.push_back(canonical_path(vm.rootfs) + ",ro");
  for (const std::string& d : vm.drives) {
    size_t comma = d.find(',');
    out.push_back(canonical_path(d.substr(0, comma)) +
                  (comma == std::string::npos ? "" : d.substr(comma)));
  }
  return out;
}

// What a template records, checked before anything boots.
TemplateInfo template_info(const TemplateSpec& spec, const VmSpec& vm) {
  check_template_name(spec.name);
  if (spec.mode != "exec" && spec.mode != "worker")
    throw Error("mode \"" + spec.mode + "\": expected exec or worker");
  if (spec.argv.empty()) throw Error("the handler command is empty");
  check_guest_files(vm);
  TemplateInfo t;
  t.name = spec.name;
  t.mode = spec.mode;
  t.argv = spec.argv;
  t.env = spec.env;
  t.mem_mib = vm.mem_bytes >> 20;
  t.vcpus = vm.vcpus;
  t.warmup = spec.warmup;
  t.guest = describe_guest(vm);
  t.drives = template_drives(vm);
  t.net = record_net(vm.nets, vm.network);
  t.network = spec.network;
  t.portable = vm.portable;
  t.boot_recorded = true;
  if (!vm.kernel.empty()) t.boot_kernel = canonical_path(vm.kernel);
  if (!vm.initrd.empty()) t.boot_initrd = canonical_path(vm.initrd);
  if (!vm.rootfs.empty()) t.boot_rootfs = canonical_path(vm.rootfs);
  t.boot_cmdline = vm.cmdline;
  // Its clones' calls run in this sandbox (manager/template_store_sandbox.h), `wisp invoke`'s
  // too, not only the exec calls that name it.
  TemplateSandbox sandbox;
  if (spec.mode == "exec" && template_sandbox_of(spec.handler_sandbox, &sandbox))
    t.sandbox = std::move(sandbox);
  return t;
}

// Starts the worker and runs the warm-up calls; each must succeed.
void warm_up(client::AgentClient& agent, const TemplateSpec& spec, const TemplateInfo& t,
             const Progress& progress) {
  client::Handler h;
  h.name = t.name;
  h.argv = t.argv;
  h.env = t.env;
  h.network = t.network;
  if (t.mode == "worker") {
    progress("starting the worker: " + spec.argv[0]);
    agent.start_worker(h);
  }
  if (t.warmup == 0) return;
  progress(std::to_string(t.warmup) + " warm-up invocation(s)...");
  for (uint32_t i = 0; i < t.warmup; ++i) {
    bool starting = i == 0 && t.mode == "worker";
    client::InvokeResult r = agent.invoke(invoke_request_for(
        t, spec.warmup_payload,
        std::chrono::milliseconds(starting ? kWorkerStartTimeoutMs : kWarmupTimeoutMs)));
    std::string why = describe_call_failure(r);
    if (!why.empty()) throw Error("warm-up invocation " + std::to_string(i + 1) + " " + why);
  }
}

// Checkpoints the warm worker with CRIU into `dir` (the VM snapshot's fallback on a host
// that cannot use it, issue 17). A guest without criu (the agent initramfs) or an agent that
// predates it makes no image: logged, and the template is made without one.
bool checkpoint_worker(client::AgentClient& agent, TemplateCreated& out, const std::string& dir,
                       const Progress& progress) {
  progress("checkpointing the warm worker with CRIU...");
  try {
    StoredCriuImage image = store_criu_image(agent, out.info.name, dir);
    out.criu_image_bytes = image.bytes;
    out.criu_dump_ms = image.dump_ms;
    out.criu_ms = image.total_ms;
    char line[160];
    snprintf(
        line, sizeof(line), "CRIU image: %.1f MiB in %u files (criu dump %.0f ms, %.0f ms in all)",
        static_cast<double>(image.bytes) / (1 << 20), image.files, image.dump_ms, image.total_ms);
    progress(line);
    return true;
  } catch (const Error& e) {
    // Not fatal: the template works without the image (its VM snapshot); only the CRIU
    // fallback is lost. A lost VM is, as for any other step.
    auto* agent_error = dynamic_cast<const client::AgentError*>(&e);
    if (agent_error != nullptr && agent_error->kind() == client::AgentError::Kind::kDisconnected)
      throw;
    progress(std::string("warning: no CRIU image: ") + e.what());
    return false;
  }
}

// The template's VM booted by `standby` on an order; nullptr (logged through `progress`) when
// the order failed, so the caller spawns it instead.
std::unique_ptr<AgentVm> boot_by_standby(std::unique_ptr<StandbyVmm> standby, const VmSpec& vm,
                                         const Progress& progress) {
  try {
    standby->order_boot(vm);
    standby->wait_ready(std::chrono::milliseconds(60000));
    progress("booted by a standing-by VMM of the pool");
    return standby->release();
  } catch (const Error& e) {
    progress(std::string("the pool's standby VMM did not boot it (") + e.what() +
             "); spawning one");
    return nullptr;
  }
}

// The template's working set (manager/working_set_probe.h) into its snapshot directory. A probe
// that fails fails the creation with its reason: a clone of this snapshot would fail the same
// way, and a template without its working set would be silently slower.
void record_working_set(const TemplateSpec& spec, const VmSpec& vm, const std::string& dir,
                        const Progress& progress, Cancellation* cancellation,
                        TemplateCreated* out) {
  progress("recording the working set: a probe clone's first call...");
  WorkingSetProbe probe =
      manager::record_working_set(dir, out->info, spec.warmup_payload, vm.jail, cancellation);
  out->working_set_pages = probe.pages;
  out->probe_ms = probe.ms;
  progress("working set: " + std::to_string(probe.pages) + " pages in " +
           std::to_string(probe.ranges.size()) + " ranges, " + std::to_string(probe.written_pages) +
           " of them written");
}

// The CRIU image as a read-only drive (criu_drive.h) for the fallback's restore, made from the
// archive just stored. Not fatal: the fallback makes it again, or sends the archive.
void make_drive(const std::string& snapshot_dir, TemplateCreated& out, const Progress& progress) {
  try {
    CriuDriveMade d = make_criu_drive(snapshot_dir);
    out.criu_drive_bytes = d.record.identity.size_bytes;
    out.criu_drive_ms = d.ms;
    char line[160];
    snprintf(line, sizeof(line), "CRIU image drive: %.1f MiB ext4 (%u files) in %.0f ms",
             static_cast<double>(d.record.identity.size_bytes) / (1 << 20), d.files, d.ms);
    progress(line);
  } catch (const Error& e) {
    progress(std::string("warning: no CRIU image drive (the fallback will send the archive): ") +
             e.what());
  }
}

}  // namespace

VmSpec template_vm(const TemplateSpec& spec) {
  VmSpec vm = spec.vm;
  if (!vm.mem_bytes) vm.mem_bytes = kDefaultMemBytes;
  if (!vm.vcpus) vm.vcpus = 1;
  vm.raw_cmdline = false;
  return vm;
}

TemplateCreated create_template(const TemplateSpec& spec, const Progress& progress,
                                Cancellation* cancellation, std::unique_ptr<StandbyVmm> standby) {
  uint64_t t0 = spec.start_ns ? spec.start_ns : now_ns();
  VmSpec vm = template_vm(spec);
  TemplateCreated out;
  out.info = template_info(spec, vm);
  TemplateStaging staging(spec.name, spec.rebuild);
  progress("booting " + spec.name + " (" + std::to_string(vm.mem_bytes >> 20) + " MiB, " +
           std::to_string(vm.vcpus) + " vCPU)...");
  if (cancellation && cancellation->cancelled()) throw Error("interrupted");
  std::unique_ptr<AgentVm> machine;
  if (standby) machine = boot_by_standby(std::move(standby), vm, progress);
  if (!machine) machine = AgentVm::boot(vm, /*control=*/true, "wisp-template");
  std::optional<Cancellation::Watch> watch(std::in_place, cancellation, machine->vmm());
  std::unique_ptr<client::AgentClient> agent;
  try {
    agent = machine->connect_agent(spec.boot_timeout, /*confirm=*/false);
    agent->ping();
  } catch (const Error& e) {
    throw machine->failure(e.what());
  }
  out.boot_ms = ms_since(t0);
  warm_up(*agent, spec, out.info, progress);
  out.warmup_ms = ms_since(t0) - out.boot_ms;
  bool criu_image = false;
  // By default (--no-criu skips it): in the nested testbed the dump cost 1.4 s of an 8 s
  // creation when the host was quiet, 2.8-5.6 s of 12-23 s when it was loaded.
  if (out.info.mode == "worker" && spec.criu_image)
    criu_image = checkpoint_worker(*agent, out, staging.dir(), progress);
  if (out.info.mode == "exec") {
    // The snapshot holds a pre-forked sandbox for the handler (agent/spare_sandbox.h): this
    // returns once the agent has it set up and waiting, so every clone's first call only hands
    // it its payload. The handler is named exactly as clones' invokes will name it (same
    // limits too), or the agent would not use it.
    client::Handler spare =
        invoke_request_for(out.info, "", std::chrono::milliseconds(kWarmupTimeoutMs)).handler;
    const client::Handler& sb = spec.handler_sandbox;
    spare.limits = sb.limits;
    spare.root_device = sb.root_device;
    spare.cwd = sb.cwd;
    spare.uid = sb.uid;
    spare.gid = sb.gid;
    spare.additional_gids = sb.additional_gids;
    agent->prepare_snapshot(spare);
  } else {
    agent->prepare_snapshot();
  }
  // Close our connection and let the guest go idle before pausing it: whatever it is in the
  // middle of at the snapshot (tearing down this RPC connection, deferred kernel work) every
  // clone would redo after its restore, paying for each page it touches.
  agent.reset();
  std::this_thread::sleep_for(kSettle);
  progress("snapshotting...");
  control::SnapshotReport snap;
  try {
    snap = create_snapshot(*machine->control(), staging.snapshot_dir(), /*diff=*/false);
  } catch (const Error& e) {
    throw Error(std::string("snapshot failed: ") + e.what());
  }
  watch.reset();
  machine.reset();
  if (criu_image) {
    // Beside the VM snapshot, in its directory (criu_image_store.h).
    for (const char* f : {kCriuImageFile, kCriuImageSumFile}) {
      std::string from = staging.dir() + "/" + f, to = staging.snapshot_dir() + "/" + f;
      if (rename(from.c_str(), to.c_str()) != 0) throw_errno("rename " + from + " to " + to);
    }
    fsync_dir(staging.snapshot_dir());
    make_drive(staging.snapshot_dir(), out, progress);
  }
  if (spec.warmup > 0)
    record_working_set(spec, vm, staging.snapshot_dir(), progress, cancellation, &out);
  else
    progress("no working set recorded (--warmup 0: the handler is not called before use)");
  out.snapshot_ms = out.info.snapshot_ms = snap.total_ms;
  out.info.memory_file_bytes = snap.memory_file_bytes;
  out.info.memory_disk_bytes = snap.memory_disk_bytes;
  out.info.created_unix = static_cast<int64_t>(::time(nullptr));
  staging.commit(out.info);
  return out;
}

}  // namespace wisp::manager
