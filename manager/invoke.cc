#include "manager/invoke.h"

#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"

namespace wisp::manager {
namespace {

constexpr std::chrono::milliseconds kRestoreTimeout{30000};
constexpr std::chrono::milliseconds kConnectTimeout{30000};

// Calls the clone's agent: reconnect, then fresh entropy and clock with the invocation.
void call_clone(AgentVm& clone, const TemplateInfo& t, const InvokeRequest& request, uint64_t t0,
                InvokeOutcome* out) {
  // Unconfirmed: the VMM holds the connect until the guest has handled the vsock reset it
  // sees as it resumes, so the connection that goes through stays up; the reseed goes with the
  // invoke (one round trip for both).
  auto agent = clone.connect_agent(kConnectTimeout, /*confirm=*/false);
  out->connect_ms = ms_since(t0) - out->restore_ms;
  out->reconnect_ms = out->connect_ms;
  std::string entropy(64, '\0');
  if (getentropy(entropy.data(), entropy.size()) != 0) throw_errno("getentropy");
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  out->result = agent->resumed_then_invoke(entropy, now.tv_sec * 1000000000ll + now.tv_nsec,
                                           invoke_request_for(t, request.payload, request.timeout));
  out->total_ms = ms_since(t0);
  out->invoke_ms = out->total_ms - out->restore_ms - out->reconnect_ms;
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
  }
  return req;
}

InvokeOutcome invoke(const std::string& template_name, const InvokeRequest& request,
                     Cancellation* cancellation) {
  uint64_t t0 = request.start_ns ? request.start_ns : now_ns();
  // Held to the end of the call: a rebuild or removal meanwhile leaves this generation be.
  OpenTemplate tpl = open_template(template_name);
  const TemplateInfo& t = tpl.info;
  InvokeOutcome out;
  if (cancellation && cancellation->cancelled()) throw Error("interrupted");
  std::unique_ptr<AgentVm> clone =
      AgentVm::restore(tpl.snapshot_dir, t.drives, t.net, request.count_pages, kRestoreTimeout,
                       request.jail, cancellation, request.prefetch);
  out.restore_ms = ms_since(t0);
  out.jail_ms = clone->jail_ms();
  Cancellation::Watch watch(cancellation, clone->vmm());
  try {
    call_clone(*clone, t, request, t0, &out);
  } catch (const Error& e) {
    throw clone->vmm().alive() ? VmFailed(e.what()) : clone->failure(e.what());
  }
  if (request.count_pages) {
    try {
      control::MemoryStats stats = clone->control()->stats();
      out.pages_touched = static_cast<int64_t>(stats.resident_pages);
      out.vcpu = stats.vcpu;
    } catch (const Error&) {
      // Only a figure: the result is what counts.
    }
  }
  return out;
}

}  // namespace wisp::manager
