// The engine of `wisp serve`: what every connection's capabilities share (admission, stats,
// the reaper, warm clones, sandboxes, the drain state) and the fast path, one call on a fresh
// clone, in plain C++ types. wisp_server.cc maps api/wisp.capnp onto it.
//
// Threads: serve's loop thread; template builds run on threads of their own (template_build.h).
#pragma once

#include <kj/async-io.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "api/agent_client.h"
#include "api/jail_flags.h"
#include "manager/service/admission.h"
#include "manager/service/allowed_dirs.h"
#include "manager/service/clone.h"
#include "manager/service/criu_fallbacks.h"
#include "manager/service/reaper.h"
#include "manager/service/sandbox_registry.h"
#include "manager/service/service_stats.h"
#include "manager/service/template_builds.h"
#include "manager/service/thread_jobs.h"
#include "manager/service/warm_pool.h"
#include "manager/template_store.h"

namespace wisp::service {

struct ServeOptions {
  std::string socket;  // --socket PATH
  AdmissionLimits limits;
  uint32_t pool = 0;                     // --pool N (the pool's target size)
  uint64_t huge_layer_mib = 1024;        // --huge-page-layer MIB (manager/huge_page_layer.h)
  std::map<std::string, uint32_t> warm;  // --warm NAME=N
  // Before a warm clone is paused its VMM copies the pages a call writes (Vmm.populateWritable)
  // and its guest reads its template's working set (agent.touchMemory), so KVM has mapped
  // those pages before a call (--no-warm-touch: not).
  bool warm_touch = true;
  // Warm calls report their guest's exits, nested page faults and pages written (one more VMM
  // call each, before the answer; --vcpu-counts).
  bool vcpu_counts = false;
  std::vector<std::string> allow_dirs;  // --allow-dir DIR (empty: the defaults)
  std::chrono::milliseconds drain_timeout{30000};
  JailFlags jail;               // how clone VMMs are jailed (default: fully)
  std::string http;             // --http ADDR ("" none)
  std::string http_token_file;  // --http-token-file F
};

struct CallRequest {
  std::string payload;
  uint64_t timeout_ms = 30000;   // the handler's limit
  uint64_t deadline_ms = 30000;  // how long to wait for capacity
};

// Timings in api/wisp.capnp: queue, restore and total count from the request's arrival; the
// others are the stage's own length. reconnect is connect (a new clone: the reseed is its
// confirmation, so reseed_ms stays 0) or resume and reseed, which overlap (a warm clone: both
// count from the resume's start); invoke runs from reconnect's end to the result (the handler's
// call went out with the reseed, for either kind: part of it may be over by then); handler is
// the agent's own time for the handler's run.
struct CallTimings {
  double queue_ms = 0, restore_ms = 0, reconnect_ms = 0, invoke_ms = 0, total_ms = 0;
  double connect_ms = 0, resume_ms = 0, reseed_ms = 0, handler_ms = 0;
  bool warm = false, pooled = false;
  // Warm clones of the template being restored in the background as the call started (the
  // refill its own take started included): they compete with it for the CPU.
  uint32_t warm_filling = 0;
  // Served from the template's CRIU image (its VM snapshot does not fit this host): restore_ms
  // ends once the worker was restored; boot_ms and criu_restore_ms are that restore's stages
  // (criu_guest_ms, criu_upload_ms, criu_unpack_ms, criu_mount_ms of the latter; criu_drive_ms
  // of the former), criu_source how the image reached the guest ("drive" or "upload").
  bool criu_fallback = false;
  double boot_ms = 0, criu_restore_ms = 0, criu_guest_ms = 0, criu_upload_ms = 0,
         criu_unpack_ms = 0, criu_mount_ms = 0, criu_drive_ms = 0;
  std::string criu_source;
  // A warm call's vCPU counters (ServeOptions::vcpu_counts; api/wisp.capnp Timings).
  bool vcpu_counted = false;
  uint64_t exits = 0, nested_page_faults = 0, written_pages = 0;
};

struct CallResult {
  client::InvokeResult result;
  CallTimings timings;
};

class Service {
 public:
  Service(kj::AsyncIoContext& io, ServeOptions options);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // The fast path: admit, restore (or take a warm clone), reseed, invoke, destroy. Fails with
  // the error words of api/wisp.capnp. Cancelling the promise destroys the clone.
  // A worker template whose VM snapshot does not fit this host (manager/snapshot_fit.h) and
  // that has a CRIU image is served from the image instead (Timings.criuFallback; on a thread,
  // criu_fallback_call.cc), and its snapshot is re-made in the background.
  kj::Promise<CallResult> invoke(const std::string& name, CallRequest request);
  // A clone of template `name`, admitted, restored, connected and reseeded (for a sandbox).
  kj::Promise<kj::Own<Clone>> start_clone(const std::string& name, uint64_t deadline_ms);

  // Throws "draining: ..." once drain() started.
  void check_accepting() const;
  // Opens template `name` for a call: "bad-request: ..." for a malformed name, "not-found: ..."
  // when it is not in the store.
  manager::OpenTemplate open(const std::string& name) const;
  // Starts draining: new work is refused, waiting requests fail, warm clones go.
  void drain();
  bool draining() const { return draining_; }
  // Template generations whose snapshot does not fit this host.
  const CriuFallbacks& criu_fallbacks() const { return fallbacks_; }
  // Calls and template builds under way (a drain waits for them).
  uint32_t in_flight() const { return in_flight_; }
  uint32_t in_flight(const std::string& name) const;

  kj::AsyncIoContext& io() { return io_; }
  const ServeOptions& options() const { return options_; }
  Admission& admission() { return admission_; }
  ServiceStats& stats() { return stats_; }
  const AllowedDirs& allowed_dirs() const { return allowed_; }
  Reaper& reaper() { return reaper_; }
  WarmPools& warm() { return warm_; }
  SandboxRegistry& sandboxes() { return sandboxes_; }
  TemplateBuilds& builds() { return builds_; }
  CloneStarter& starter() { return starter_; }
  uint32_t warm_target(const std::string& name) const { return warm_.target(name); }
  uint32_t warm_ready(const std::string& name) const { return warm_.ready(name); }

  // Counts a call in flight for its lifetime (the drain and stats' inFlight read it).
  class InFlight {
   public:
    InFlight(Service& s, std::string name);
    ~InFlight();
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    Service& s_;
    std::string name_;
  };

 private:
  // Keeps the pool at its target, every kPoolRefillInterval (a take never spawns in the call).
  kj::Promise<void> refill_pool();
  // One call of invoke(): its clone (once it has one), request and timings, held by the call's
  // promise chain (so cancelling the call destroys the clone).
  struct Call {
    explicit Call(Service& s) : service(s) {
      ++s.calls_running_;
      s.update_warm_making();
    }
    ~Call();
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;
    Service& service;
    kj::Own<Clone> clone;
    CallRequest request;
    uint64_t t0 = 0;
    CallTimings timings;
    // The handler's call if it went out before the clone was ready (start_fresh).
    kj::Maybe<kj::Promise<client::InvokeResult>> invoked;
    // The warm template whose refill waits for this call's end (resume_warm).
    kj::Maybe<std::string> refill_at_end;
  };
  // Drops a call that answered (its clone, its count in flight) a moment after its answer
  // went out (kAnswerHeadStart).
  void retire(kj::Own<Call> call, kj::Own<InFlight> in_flight);
  // `call`'s handler call, sent on `agent` (its clone's link, maybe not yet accepted).
  kj::Promise<client::InvokeResult> send_invoke(Call& call, AgentLink& agent);
  // A warm clone taken for `call`: resumed and reseeded.
  kj::Promise<void> resume_warm(Call& call);
  // A new clone for `call`: admitted, restored, connected and reseeded.
  kj::Promise<void> start_fresh(Call& call, manager::OpenTemplate tpl);
  // The handler's run on the ready clone (its call sent now if not already); fills the result's
  // timings: invoke_ms from the clone being ready to the result.
  kj::Promise<CallResult> run_handler(Call& call);
  // run_handler once `call`'s clone is connected and reseeded (`ready`).
  kj::Promise<CallResult> after_ready(Call& call, kj::Promise<void> ready);
  // A warm clone of `name`, made ahead of demand (WarmPools' maker).
  kj::Promise<kj::Own<Clone>> make_warm(const std::string& name);
  // A warm clone's guest reads its template's working set before it is paused (ServeOptions::
  // warm_touch), its VMM having made the learned written set private copies first: the
  // ranges (none when off or the template has none; the working set read from the snapshot
  // once per template generation, warm_touches_), then the two calls. A failure only warns, once
  // per template generation (touch_warned_).
  struct WarmTouch {
    std::vector<std::pair<uint64_t, uint64_t>> guest;  // the working set, guest-physical
    // What the generation's first warm call's clone wrote, memory file pages (learn_written);
    // empty before (the restore has populated the template's written-set).
    std::vector<std::pair<uint64_t, uint64_t>> written;
    bool learned = false;
  };
  const WarmTouch& warm_touch_of(const manager::OpenTemplate& tpl);
  kj::Promise<void> touch_working_set(Clone& c, const std::string& name, const WarmTouch& touch);
  // After the first warm call of a template generation (and none after): its clone's written
  // pages become the written set later warm clones of it populate.
  kj::Promise<void> learn_written(Call& call);
  void warn_touch_once(const std::string& generation_dir, const std::string& why);
  // Warm clones being made wait while calls take every CPU serve may use (Clone::set_stopped:
  // at SCHED_IDLE they still cost such calls; on the testbed's one CPU, any call): stopped as
  // calls reach that many, continued as they drop below; one due meanwhile starts only then
  // (spare_cpu_). With CPUs to spare they run beside the calls.
  void update_warm_making();

  // criu_fallback_call.cc: the CRIU fallback (issue 17).
  // start_fresh, or the call from the CRIU image when the clone's restore failed because the
  // snapshot does not fit (or the generation is known not to).
  kj::Promise<CallResult> fresh_or_fall_back(Call& call, manager::OpenTemplate tpl);
  // Why `tpl`'s snapshot does not fit, after a clone of it failed with `e` ("" when that was
  // another failure); the first time for its generation: logged, its warm clones stopped.
  std::string unfit_after_failure(const manager::OpenTemplate& tpl, const kj::Exception& e);
  // Marks `generation` of `name` unfit (logged once) and stops its warm clones.
  void note_unfit(const std::string& name, const std::string& generation,
                  const std::string& reason);
  // The call served from the CRIU image: admitted for the template's memory (the rest of the
  // call's deadline), run on a thread of jobs_, then the snapshot's re-make started.
  kj::Promise<CallResult> fall_back(Call& call, std::shared_ptr<manager::OpenTemplate> tpl,
                                    std::string reason);
  // Re-makes `generation`'s VM snapshot in the background, one at a time per generation
  // (manager::rebuild_template --if-generation --skip-if-busy); not with
  // WISP_NO_SNAPSHOT_REMAKE=1 or while draining.
  void remake_snapshot(const std::string& name, const std::string& generation);
  // The re-make itself on a thread of jobs_, holding `ticket`; a failure lets a later
  // fallback call try again (CriuFallbacks::rebuild_failed).
  kj::Promise<void> run_remake(const std::string& name, const std::string& generation,
                               JailFlags jail, uint64_t t0, kj::Own<Ticket> ticket);

  kj::AsyncIoContext& io_;
  ServeOptions options_;
  Admission admission_;  // before everything that holds tickets
  ServiceStats stats_;
  AllowedDirs allowed_;
  Reaper reaper_;         // after admission_: it gives tickets back until it is gone
  CloneStarter starter_;  // the pool; after reaper_: its standbys go before the reaper does
  kj::Promise<void> pool_refill_ = nullptr;
  SandboxRegistry sandboxes_;
  // Before warm_: a warm clone's making, dropped as warm_ goes, takes itself out of warm_making_.
  std::set<std::string> touch_warned_;      // generation directories warn_touch_once warned about
  std::map<uint64_t, Clone*> warm_making_;  // make_warm's clones until made or failed, by id
  std::map<std::string, WarmTouch> warm_touches_;  // by generation directory (warm_touch_of)
  uint64_t warm_making_ids_ = 0;
  bool warm_making_stopped_ = false;
  // While warm_making_stopped_: resolves once it is cleared (make_warm waits for it).
  kj::ForkedPromise<void> spare_cpu_ = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> spare_cpu_fulfiller_;
  uint32_t cpus_ = 1;  // CPUs this process may run on (its affinity mask)
  WarmPools warm_;
  TemplateBuilds builds_;  // its threads are joined before the rest goes
  CriuFallbacks fallbacks_;
  bool remake_snapshots_ = true;  // WISP_NO_SNAPSHOT_REMAKE unset
  ThreadJobs jobs_;               // CRIU fallback calls and snapshot re-makes
  class LogErrors : public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override;
  };
  LogErrors background_errors_;
  // The re-makes under way: destroyed first (their VMs killed), then jobs_ joins their threads.
  kj::TaskSet background_{background_errors_};
  bool draining_ = false;
  uint32_t in_flight_ = 0;
  uint32_t calls_running_ = 0;  // invoke()'s calls under way: refills wait for none
  std::map<std::string, uint32_t> in_flight_by_name_;
  // Calls that answered, until their clones go (retire). Last: destroyed first, while what
  // a call's end touches (the counts above, warm_, background_) is still there.
  kj::TaskSet retiring_{background_errors_};
};

// "" for a handler that ran to an exit code, else "timeout" or "limit" (Stats outcomes).
std::string outcome_of(const client::InvokeResult& r);

}  // namespace wisp::service
