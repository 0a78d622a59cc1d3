#include "manager/invoke.h"

#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "manager/criu_boot.h"
#include "manager/criu_image_store.h"
#include "manager/snapshot_fit.h"

namespace wisp::manager {
namespace {

constexpr std::chrono::milliseconds kRestoreTimeout{30000};
constexpr std::chrono::milliseconds kConnectTimeout{30000};
// A cold boot of the template's guest (the CRIU fallback): as long as template create allows.
constexpr std::chrono::milliseconds kBootTimeout{120000};

// Calls the clone's agent: the reseed (fresh entropy and clock) and the invocation go with the
// connection request, one round trip to the result. The VMM holds the connect until the guest
// has handled the vsock reset it sees as it resumes, so the connection stays up.
void call_clone(AgentVm& clone, const TemplateInfo& t, const InvokeRequest& request, uint64_t t0,
                InvokeOutcome* out) {
  client::InvokeRequest call = invoke_request_for(t, request.payload, request.timeout);
  uint64_t reseeded_ns = 0;
  clone.connect_agent_with(kConnectTimeout, [&](client::AgentClient& agent) {
    std::string entropy(64, '\0');
    if (getentropy(entropy.data(), entropy.size()) != 0) throw_errno("getentropy");
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    out->result = agent.resumed_then_invoke(entropy, now.tv_sec * 1000000000ll + now.tv_nsec, call,
                                            &reseeded_ns);
  });
  out->total_ms = ms_since(t0);
  // Until the reseed's answer (the connection and the reseed), then on to the result.
  out->connect_ms = static_cast<double>(reseeded_ns - t0) / 1e6 - out->restore_ms;
  out->reconnect_ms = out->connect_ms;
  out->invoke_ms = out->total_ms - out->restore_ms - out->reconnect_ms;
}

// The line of a failed restore's message (with the VMM's log) that says why, for the log.
std::string cpu_mismatch_line(const std::string& message) {
  size_t at = message.find("snapshot is from another CPU");
  size_t begin = message.rfind('\n', at);
  begin = begin == std::string::npos ? 0 : begin + 1;
  size_t end = message.find('\n', at);
  return message.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// The KVM counters and pages of a VM, for --timings; best effort.
void count_pages(AgentVm& vm, InvokeOutcome* out) {
  try {
    control::MemoryStats stats = vm.control()->stats();
    out->pages_touched = static_cast<int64_t>(stats.resident_pages);
    out->vcpu = stats.vcpu;
  } catch (const Error&) {
    // Only a figure: the result is what counts.
  }
}

}  // namespace

client::InvokeRequest invoke_request_for(const TemplateInfo& t, std::string payload,
                                         std::chrono::milliseconds timeout) {
  client::InvokeRequest req;
  req.payload = std::move(payload);
  req.timeout_ms = static_cast<uint64_t>(timeout.count());
  req.handler.name = t.name;
  req.handler.network = t.network;
  if (t.mode == "worker") {
    req.mode = client::InvokeMode::kWorker;
  } else {
    req.handler.argv = t.argv;
    req.handler.env = t.env;
    // A container's template (shim/snapshot_start.h): its root, cwd, user and limits, as the
    // snapshot's pre-forked sandbox was made (manager/template_store_sandbox.h).
    if (t.sandbox) manager::apply_template_sandbox(*t.sandbox, &req.handler);
  }
  return req;
}

InvokeOutcome invoke_from_criu_image(const OpenTemplate& tpl, const InvokeRequest& request,
                                     const std::string& reason, Cancellation* cancellation) {
  uint64_t t0 = request.start_ns ? request.start_ns : now_ns();
  const TemplateInfo& t = tpl.info;
  if (request.log)
    request.log("snapshot does not fit this host (" + reason + "); falling back to the CRIU image");
  InvokeOutcome out;
  out.criu_fallback = true;
  out.fallback_reason = reason;
  out.generation = tpl.dir;
  CriuStart start = start_from_criu_image(t, tpl.snapshot_dir, request.jail, request.count_pages,
                                          cancellation, kBootTimeout, request.log);
  out.boot_ms = ms_since(t0) - start.criu_ms;
  out.criu_ms = start.criu_ms;
  out.criu_guest_ms = start.criu_guest_ms;
  out.criu_upload_ms = start.upload_ms;
  out.criu_unpack_ms = start.unpack_ms;
  out.criu_mount_ms = start.mount_ms;
  out.criu_drive_ms = start.drive_ms;
  out.criu_source = criu_source_name(start.source);
  if (request.log)
    request.log(std::string("worker restored from the CRIU image ") +
                (start.source == CriuSource::kDrive ? "on its read-only drive"
                                                    : "sent to the agent (upload)"));
  out.restore_ms = ms_since(t0);
  Cancellation::Watch watch(cancellation, start.vm->vmm());
  try {
    std::string entropy(64, '\0');
    if (getentropy(entropy.data(), entropy.size()) != 0) throw_errno("getentropy");
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    out.result =
        start.agent->resumed_then_invoke(entropy, now.tv_sec * 1000000000ll + now.tv_nsec,
                                         invoke_request_for(t, request.payload, request.timeout));
  } catch (const Error& e) {
    throw start.vm->vmm().alive() ? VmFailed(e.what()) : start.vm->failure(e.what());
  }
  out.total_ms = ms_since(t0);
  out.invoke_ms = out.total_ms - out.restore_ms;
  if (request.count_pages) count_pages(*start.vm, &out);
  return out;
}

bool has_criu_fallback(const OpenTemplate& tpl) {
  return tpl.info.mode == "worker" && has_criu_image(tpl.snapshot_dir);
}

std::string snapshot_unfit_before_restore(const OpenTemplate& tpl) {
  // A VMM spawned, jailed and refusing the snapshot delayed the fallback by ~0.2 s on the
  // testbed (build/exp/s23f.sh); the check costs a stat, an open and a 24-byte read.
  return has_criu_fallback(tpl) ? snapshot_plainly_unfit_reason(tpl.snapshot_dir) : "";
}

std::string snapshot_unfit_after_failure(const OpenTemplate& tpl, const std::string& failure,
                                         bool vm_failed) {
  std::string unfit = snapshot_unfit_reason(tpl.snapshot_dir);
  // Another CPU model: only the VMM can tell (it asks KVM for this host's CPUID).
  if (unfit.empty() && vm_failed && is_cpu_mismatch(failure)) unfit = cpu_mismatch_line(failure);
  return unfit;
}

InvokeOutcome invoke(const std::string& template_name, const InvokeRequest& request,
                     Cancellation* cancellation) {
  uint64_t t0 = request.start_ns ? request.start_ns : now_ns();
  // Held to the end of the call: a rebuild or removal meanwhile leaves this generation be.
  OpenTemplate tpl = open_template(template_name);
  const TemplateInfo& t = tpl.info;
  InvokeOutcome out;
  if (cancellation && cancellation->cancelled()) throw Error("interrupted");
  // Another CPU model still takes the VMM's refusal (below).
  if (std::string unfit = snapshot_unfit_before_restore(tpl); !unfit.empty()) {
    InvokeRequest fallback = request;
    fallback.start_ns = t0;
    return invoke_from_criu_image(tpl, fallback, unfit, cancellation);
  }
  std::unique_ptr<AgentVm> clone;
  try {
    clone = AgentVm::restore(tpl.snapshot_dir, t.drives, t.net, request.count_pages,
                             kRestoreTimeout, request.jail, cancellation, request.prefetch);
  } catch (const Error& e) {
    // Why the snapshot does not fit is asked only once its restore failed: the VMM reads and
    // checks the state file itself, so a warm call does not read it twice.
    if (!has_criu_fallback(tpl) || (cancellation && cancellation->cancelled())) throw;
    std::string unfit =
        snapshot_unfit_after_failure(tpl, e.what(), dynamic_cast<const VmFailed*>(&e) != nullptr);
    if (unfit.empty()) throw;
    InvokeRequest fallback = request;
    fallback.start_ns = t0;
    return invoke_from_criu_image(tpl, fallback, unfit, cancellation);
  }
  out.restore_ms = ms_since(t0);
  out.jail_ms = clone->jail_ms();
  Cancellation::Watch watch(cancellation, clone->vmm());
  try {
    call_clone(*clone, t, request, t0, &out);
  } catch (const Error& e) {
    throw clone->vmm().alive() ? VmFailed(e.what()) : clone->failure(e.what());
  }
  if (request.count_pages) count_pages(*clone, &out);
  return out;
}

}  // namespace wisp::manager
