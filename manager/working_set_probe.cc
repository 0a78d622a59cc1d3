#include "manager/working_set_probe.h"

#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "manager/agent_vm.h"
#include "manager/invoke.h"
#include "snapshot/working_set.h"

namespace wisp::manager {
namespace {

constexpr std::chrono::milliseconds kRestoreTimeout{60000};
constexpr std::chrono::milliseconds kConnectTimeout{60000};
constexpr std::chrono::milliseconds kCallTimeout{60000};

}  // namespace

WorkingSetProbe probe_working_set(const std::string& snapshot_dir, const TemplateInfo& info,
                                  const std::string& payload, const JailFlags& jail,
                                  Cancellation* cancellation) {
  uint64_t t0 = now_ns();
  WorkingSetProbe out;
  // --no-prefetch: the directory has no working set yet, but say so anyway: this measures.
  std::unique_ptr<AgentVm> clone =
      AgentVm::restore(snapshot_dir, info.drives, info.net, /*control=*/true, kRestoreTimeout, jail,
                       cancellation, Prefetch::kNone);
  Cancellation::Watch watch(cancellation, clone->vmm());
  try {
    // The call as manager/invoke.cc makes it: fresh entropy and clock with the invoke.
    auto agent = clone->connect_agent(kConnectTimeout, /*confirm=*/false);
    std::string entropy(64, '\0');
    if (getentropy(entropy.data(), entropy.size()) != 0) throw_errno("getentropy");
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    out.result = agent->resumed_then_invoke(entropy, now.tv_sec * 1000000000ll + now.tv_nsec,
                                            invoke_request_for(info, payload, kCallTimeout));
    auto control = clone->control();
    out.memory_pages = control->stats().pages;
    out.ranges = control->resident_ranges();
    out.written = control->written_ranges();
  } catch (const Error& e) {
    throw clone->vmm().alive() ? VmFailed(e.what()) : clone->failure(e.what());
  }
  for (const auto& r : out.ranges) out.pages += r.second;
  for (const auto& r : out.written) out.written_pages += r.second;
  out.ms = ms_since(t0);
  return out;
}

std::string describe_call_failure(const client::InvokeResult& r) {
  if (r.timed_out) return "timed out";
  if (!r.limit_exceeded.empty()) return "exceeded its " + r.limit_exceeded + " limit";
  if (r.signaled) return "killed by signal " + std::to_string(r.signal);
  if (r.exit_code != 0)
    return "exited with status " + std::to_string(r.exit_code) +
           (r.err.empty() ? "" : ": " + r.err.substr(0, 500));
  return "";
}

WorkingSetProbe record_working_set(const std::string& snapshot_dir, const TemplateInfo& info,
                                   const std::string& payload, const JailFlags& jail,
                                   Cancellation* cancellation) {
  WorkingSetProbe probe;
  try {
    probe = probe_working_set(snapshot_dir, info, payload, jail, cancellation);
  } catch (const Error& e) {
    throw Error(std::string("working-set probe: ") + e.what());
  }
  std::string why = describe_call_failure(probe.result);
  if (!why.empty()) throw Error("working-set probe: the probe clone's first call " + why);
  // The pages it touched, and of them those it wrote, in the same file format.
  auto write = [&](const std::vector<std::pair<uint64_t, uint64_t>>& runs, const char* name) {
    snapshot::WorkingSet ws;
    ws.memory_pages = probe.memory_pages;
    for (const auto& [first, count] : runs) ws.ranges.push_back({first, count});
    snapshot::write_working_set(snapshot_dir, ws, name);
  };
  write(probe.ranges, snapshot::kWorkingSetFileName);
  if (!probe.written.empty()) write(probe.written, snapshot::kWrittenSetFileName);
  return probe;
}

std::vector<std::pair<uint64_t, uint64_t>> working_set_guest_ranges(
    const std::string& snapshot_dir) {
  const std::string path = snapshot_dir + "/" + snapshot::kWorkingSetFileName;
  if (access(path.c_str(), F_OK) != 0) return {};
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const snapshot::PageRange& r :
       snapshot::guest_physical_ranges(snapshot::read_working_set(path, 0)))
    out.emplace_back(r.first, r.count);
  return out;
}

}  // namespace wisp::manager
