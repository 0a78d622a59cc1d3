#include "manager/service/service.h"

#include <kj/debug.h>
#include <sched.h>

#include <algorithm>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "manager/invoke.h"
#include "manager/working_set_probe.h"

namespace wisp::service {
namespace {

constexpr uint64_t kMaxPayloadBytes = 16ull << 20;  // Wisp.maxPayloadBytes
constexpr uint64_t kMaxTimeoutMs = 24ull * 3600 * 1000;
constexpr uint64_t kDefaultMemMib = 256;
constexpr kj::Duration kPoolRefillInterval = 50 * kj::MILLISECONDS;
// How long a finished call's clone outlives its answer (Service::retire).
constexpr kj::Duration kAnswerHeadStart = 5 * kj::MILLISECONDS;

kj::Duration ms_duration(uint64_t ms) { return static_cast<int64_t>(ms) * kj::MILLISECONDS; }

uint64_t mem_of(const manager::TemplateInfo& t) { return t.mem_mib ? t.mem_mib : kDefaultMemMib; }

// An idle standby VMM holds no guest memory yet, only itself and its supervisor: ~2 MiB of
// RSS each in boot_bench ("VMM RSS w/o guest RAM"); held with room to spare so that a full
// pool never takes serve past --max-memory.
constexpr uint64_t kStandbyReserveMib = 8;

AdmissionLimits limits_of(const ServeOptions& o) {
  AdmissionLimits limits = o.limits;
  if (limits.max_memory_mib == 0) return limits;
  limits.reserved_mib = uint64_t{o.pool} * kStandbyReserveMib;
  if (limits.reserved_mib >= limits.max_memory_mib)
    throw Error("--pool " + std::to_string(o.pool) + ": its standby VMMs hold " +
                std::to_string(limits.reserved_mib) + " MiB (" +
                std::to_string(kStandbyReserveMib) + " MiB each), all of --max-memory " +
                std::to_string(limits.max_memory_mib) + " MiB");
  return limits;
}

}  // namespace

std::string outcome_of(const client::InvokeResult& r) {
  if (r.timed_out) return "timeout";
  if (!r.limit_exceeded.empty()) return "limit";
  if (!r.error.empty()) return "error";
  return "ok";
}

Service::Service(kj::AsyncIoContext& io, ServeOptions options)
    : io_(io),
      options_(std::move(options)),
      admission_(io.provider->getTimer(), limits_of(options_)),
      allowed_(options_.allow_dirs),
      starter_(options_.jail, options_.pool, options_.huge_layer_mib),
      sandboxes_(io.provider->getTimer()),
      warm_(io.provider->getTimer(), [this](const std::string& name) { return make_warm(name); }) {
  const char* no_remake = getenv("WISP_NO_SNAPSHOT_REMAKE");
  remake_snapshots_ = !(no_remake && std::string(no_remake) == "1");
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
    cpus_ = std::max<uint32_t>(1, static_cast<uint32_t>(CPU_COUNT(&cpus)));
  // The store's templates copied to the huge-page layer in the background, in name order while
  // it has room, so that their first calls find them there.
  try {
    for (const std::string& name : manager::template_names()) {
      try {
        starter_.prepare(manager::open_template(name));
      } catch (const Error&) {
        // A template being made or broken: its first call says so, not serve's start.
      }
    }
  } catch (const Error& e) {
    LOG_WARN("huge-page layer: the store's templates were not listed: %s", e.what());
  }
  warm_.start(options_.warm);
  if (options_.pool > 0) pool_refill_ = refill_pool().eagerlyEvaluate(nullptr);
}

kj::Promise<kj::Own<Clone>> Service::make_warm(const std::string& name) {
  // Not even started while calls take every CPU: its VMM's spawn on this loop would cost them
  // too, and a stopped one would only hold its admission ticket.
  if (warm_making_stopped_)
    return spare_cpu_.addBranch().then([this, name] { return make_warm(name); });
  manager::OpenTemplate tpl = open(name);
  if (const std::string* why = fallbacks_.unfit(tpl.dir)) {
    note_unfit(name, tpl.dir, *why);  // stops the refills
    return KJ_EXCEPTION(FAILED, "its VM snapshot does not fit this host");
  }
  // Only spare capacity: a warm clone never makes a call wait.
  KJ_IF_MAYBE (ticket, admission_.try_acquire(name, mem_of(tpl.info))) {
    auto held = std::make_shared<manager::OpenTemplate>(duplicate_template(tpl));
    auto touch = warm_touch_of(tpl);
    return kj::evalNow([&]() -> kj::Promise<kj::Own<Clone>> {
             // Made ahead of demand: spawned, jailed and restored only with CPU that calls
             // leave idle (not from the pool: its standbys are the calls'): at SCHED_IDLE
             // (again once restored, for any thread that escaped it), and stopped while calls
             // take every CPU (update_warm_making).
             auto clone = kj::heap<Clone>(io_, reaper_, kj::mv(tpl), starter_, kj::mv(*ticket),
                                          /*background=*/true);
             auto& c = *clone;
             const uint64_t id = ++warm_making_ids_;
             warm_making_[id] = &c;
             return c.restored()
                 .then([&c] {
                   c.set_background(true);
                   return c.connect();
                 })
                 .then([&c] { return c.connect_control_link(); })
                 .then([this, &c, name, touch = kj::mv(touch)] {
                   return touch_working_set(c, name, touch);
                 })
                 // Its clock held: resumed for a call, the guest has no time to catch up
                 // with, and the reseed sets its wall clock (resume_warm).
                 .then([&c] {
                   return c.guard(c.control().pause(/*lasting=*/true, /*hold_clock=*/true),
                                  "pausing");
                 })
                 .then([this, &c]() -> kj::Promise<void> {
                   if (!options_.vcpu_counts) return kj::READY_NOW;
                   return c.guard(c.control().sample(), "reading its counters")
                       .then([&c](ControlLink::Sample s) { c.made_sample = s; });
                 })
                 // Out of warm_making_ before a call can take it: never stopped once made.
                 .then([this, id, clone = kj::mv(clone)]() mutable {
                   warm_making_.erase(id);
                   // Stopped after its last call went out (the answers came anyway): held
                   // paused now, it costs no CPU, and a stopped VMM would not resume.
                   if (clone->stopped()) clone->set_stopped(false);
                   return kj::mv(clone);
                 })
                 // A failure: out of it once the clone is gone.
                 .attach(kj::defer([this, id] { warm_making_.erase(id); }));
           })
        .catch_([this, held](kj::Exception&& e) -> kj::Own<Clone> {
          // A snapshot that does not fit: no more warm clones of this generation.
          unfit_after_failure(*held, e);
          kj::throwFatalException(kj::mv(e));
        });
  }
  return kj::Promise<kj::Own<Clone>>(
      KJ_EXCEPTION(OVERLOADED, "no spare capacity for a warm clone"));
}

const Service::WarmTouch& Service::warm_touch_of(const manager::OpenTemplate& tpl) {
  auto [it, added] = warm_touches_.try_emplace(tpl.dir);
  if (!added || !options_.warm_touch) return it->second;
  // `written` stays empty until a warm call teaches it (learn_written): the template's own
  // written set is populated by every restore already (vmm/main/restore_command.cc).
  try {
    it->second.guest = manager::working_set_guest_ranges(tpl.snapshot_dir);
  } catch (const Error& e) {
    warn_touch_once(tpl.dir, e.what());
    it->second = WarmTouch();
  }
  return it->second;
}

kj::Promise<void> Service::touch_working_set(Clone& c, const std::string& name,
                                             const WarmTouch& touch) {
  if (touch.guest.empty()) return kj::READY_NOW;
  std::string dir = c.generation_dir();
  // The learned written set first: made private copies by the VMM, those pages are then mapped
  // writable as the guest reads them, and its writes in a call take no fault either.
  kj::Promise<void> written = kj::READY_NOW;
  if (!touch.written.empty())
    written = c.control()
                  .populate_writable(touch.written)
                  .then([](uint64_t) {},
                        [this, dir](kj::Exception&& e) {
                          warn_touch_once(dir, e.getDescription().cStr());
                        });
  // A clone that fails here fails its pause next; one whose VMM, agent or guest kernel is
  // older than these calls is still a warm clone, only a slower one.
  return written.then([&c, guest = touch.guest] { return c.agent().touch_memory(guest); })
      .then([this, name](uint64_t pages) { stats_.count_warm_touch(name, pages); },
            [this, dir](kj::Exception&& e) { warn_touch_once(dir, e.getDescription().cStr()); });
}

void Service::update_warm_making() {
  const bool stop = calls_running_ >= cpus_;
  if (stop == warm_making_stopped_) return;
  warm_making_stopped_ = stop;
  for (auto& [id, c] : warm_making_) c->set_stopped(stop);
  if (stop) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    spare_cpu_ = paf.promise.fork();
    spare_cpu_fulfiller_ = kj::mv(paf.fulfiller);
  } else {
    spare_cpu_fulfiller_->fulfill();
  }
}

void Service::warn_touch_once(const std::string& generation_dir, const std::string& why) {
  if (!touch_warned_.insert(generation_dir).second) return;
  LOG_WARN("serve: warm clones of %s run without their working set read ahead: %s",
           generation_dir.c_str(), why.c_str());
}

void Service::LogErrors::taskFailed(kj::Exception&& e) {
  LOG_WARN("serve: %s", e.getDescription().cStr());
}

kj::Promise<void> Service::refill_pool() {
  if (draining_) return kj::READY_NOW;
  // While calls run, only a pool with no standby left refills: a standby's spawn (this loop's
  // posix_spawn, then its exec and jail: 15-45 ms and more of CPU on the testbed) slows the
  // calls it does not serve, where CPUs are few. Between calls it refills at once.
  if (calls_running_ == 0 || starter_.idle() == 0) starter_.refill();
  return io_.provider->getTimer().afterDelay(kPoolRefillInterval).then([this] {
    return refill_pool();
  });
}

Service::Call::~Call() {
  --service.calls_running_;
  service.update_warm_making();
  KJ_IF_MAYBE (name, refill_at_end) {
    // Last in the loop's queue: a refill spawns a VMM on this loop (tens of ms on the
    // testbed), which must not hold up the answer to this call on its way out.
    service.background_.add(kj::evalLast([s = &service, name = *name] { s->warm_.refill(name); }));
  }
}

Service::~Service() {
  warm_.stop();
  sandboxes_.clear();
}

Service::InFlight::InFlight(Service& s, std::string name) : s_(s), name_(std::move(name)) {
  ++s_.in_flight_;
  ++s_.in_flight_by_name_[name_];
}

Service::InFlight::~InFlight() {
  --s_.in_flight_;
  auto it = s_.in_flight_by_name_.find(name_);
  if (it != s_.in_flight_by_name_.end() && --it->second == 0) s_.in_flight_by_name_.erase(it);
}

uint32_t Service::in_flight(const std::string& name) const {
  auto it = in_flight_by_name_.find(name);
  return it == in_flight_by_name_.end() ? 0 : it->second;
}

void Service::check_accepting() const {
  if (draining_) throw_api_error("draining: wisp serve is shutting down and takes no new work");
}

manager::OpenTemplate Service::open(const std::string& name) const {
  try {
    manager::check_template_name(name);
  } catch (const Error& e) {
    throw_api_error(std::string("bad-request: template name: ") + e.what());
  }
  try {
    return manager::open_template(name);
  } catch (const Error& e) {
    throw_api_error(std::string("not-found: ") + e.what());
  }
}

void Service::drain() {
  if (draining_) return;
  draining_ = true;
  admission_.fail_waiters("draining: wisp serve is shutting down; the request was not started");
  warm_.stop();
}

kj::Promise<CallResult> Service::invoke(const std::string& name, CallRequest request) {
  uint64_t t0 = now_ns();
  check_accepting();
  if (request.payload.size() > kMaxPayloadBytes)
    throw_api_error("too-large: the payload is " + std::to_string(request.payload.size()) +
                    " bytes; at most " + std::to_string(kMaxPayloadBytes) +
                    " (Wisp.maxPayloadBytes)");
  if (request.timeout_ms == 0 || request.timeout_ms > kMaxTimeoutMs)
    throw_api_error("bad-request: timeoutMs " + std::to_string(request.timeout_ms) +
                    ": expected 1 to " + std::to_string(kMaxTimeoutMs));
  manager::OpenTemplate tpl = open(name);
  auto in_flight = kj::heap<InFlight>(*this, name);
  auto call = kj::heap<Call>(*this);
  call->request = kj::mv(request);
  call->t0 = t0;
  kj::Promise<CallResult> done = nullptr;
  if (fallbacks_.unfit(tpl.dir)) {
    // Known not to fit: no warm clones, and no restore tried again.
    done = fresh_or_fall_back(*call, kj::mv(tpl));
  } else {
    // A generation that fits (a re-made snapshot): warm clones again.
    if (warm_.paused(name)) warm_.resume(name);
    KJ_IF_MAYBE (warm, warm_.take(name, tpl.dir)) {
      call->timings.warm = true;
      call->clone = kj::mv(*warm);
      call->clone->set_background(false);
      done = after_ready(*call, resume_warm(*call));
    } else {
      done = fresh_or_fall_back(*call, kj::mv(tpl));
    }
  }
  // After the take: the refill it started counts (it runs beside this call).
  call->timings.warm_filling = warm_.filling(name);
  return done
      .then(
          [this, name](CallResult r) {
            stats_.count(name, outcome_of(r.result));
            if (r.timings.criu_fallback) {
              // Its restore was a cold boot and a CRIU restore, kept apart from the clones'.
              stats_.count_criu_fallback(name);
              stats_.observe("criu", r.timings.restore_ms - r.timings.queue_ms);
            } else {
              if (!r.timings.warm)
                stats_.observe("restore", r.timings.restore_ms - r.timings.queue_ms);
              stats_.observe("reconnect", r.timings.reconnect_ms);
              stats_.observe(r.timings.warm ? "resume" : "connect",
                             r.timings.warm ? r.timings.resume_ms : r.timings.connect_ms);
              if (r.timings.warm) stats_.observe("reseed", r.timings.reseed_ms);
            }
            stats_.observe("invoke", r.timings.invoke_ms);
            stats_.observe("total", r.timings.total_ms);
            stats_.observe("handler", r.timings.handler_ms);
            return r;
          },
          [this, name](kj::Exception&& e) -> CallResult {
            stats_.count(name, outcome_of_error(e.getDescription().cStr()));
            kj::throwFatalException(kj::mv(e));
          })
      .then([this, call = kj::mv(call), in_flight = kj::mv(in_flight)](CallResult r) mutable {
        retire(kj::mv(call), kj::mv(in_flight));
        return r;
      });
}

void Service::retire(kj::Own<Call> call, kj::Own<InFlight> in_flight) {
  // The answer first: this loop writes it once the result is out of this chain, and its
  // reader needs the CPU next. The clone's end (its VMM killed) and what the call's end starts
  // (a warm refill, warm clones being made continued) would otherwise take that CPU first
  // where CPUs are few: in a trace on the one-CPU testbed they ran for 3-6 ms between a warm
  // call's result and its client's read. A call that failed or was cancelled drops its clone
  // at once, as before.
  retiring_.add(io_.provider->getTimer()
                    .afterDelay(kAnswerHeadStart)
                    .attach(kj::mv(call), kj::mv(in_flight)));
}

kj::Promise<CallResult> Service::after_ready(Call& call, kj::Promise<void> ready) {
  return ready.then([this, &call] {
    // reconnect: from the end of the restore (for a warm clone: of the wait for capacity,
    // none) until the agent was connected and reseeded.
    call.timings.reconnect_ms =
        ms_since(call.t0) - (call.timings.warm ? call.timings.queue_ms : call.timings.restore_ms);
    return run_handler(call);
  });
}

kj::Promise<void> Service::resume_warm(Call& call) {
  Clone& c = *call.clone;
  uint64_t t = now_ns();
  // All at once: the paused guest reads agent.resumed only once its vCPUs run again, so the
  // reseed's message travels while the VMM resumes them, and the handler's call right behind
  // it (the agent takes a connection's calls in order and runs no handler before the reseed
  // is done): one round trip for the three, not three. The result is taken only once both
  // answered (run_handler comes after them), so a failed reseed fails the call.
  auto both = kj::heapArrayBuilder<kj::Promise<void>>(2);
  // The refill behind this take. A restore beside the call slows it where CPUs are few: while
  // another warm clone is ready it waits for the call's end (Call::refill_at_end); with none
  // left it starts once the clone is resumed and reseeded, never before the resume's message
  // is out (WarmPools::take).
  const std::string name = c.info().name;
  bool another_ready = warm_.ready(name) > 0;
  // Each stamped as it ends (eagerly: a join would run both continuations at its own end).
  both.add(c.guard(c.control().resume(), "resuming the warm clone")
               .then([&call, t] { call.timings.resume_ms = ms_since(t); })
               .eagerlyEvaluate(nullptr));
  both.add(c.guard(c.agent().resumed_fresh(), "reseeding the clone (agent.resumed)")
               .then([&call, t] { call.timings.reseed_ms = ms_since(t); })
               .eagerlyEvaluate(nullptr));
  call.invoked = send_invoke(call, c.agent());
  auto ready = kj::joinPromises(both.finish());
  if (another_ready) {
    call.refill_at_end = name;
    return ready;
  }
  return ready.attach(kj::defer([this, name] { warm_.refill(name); }));
}

kj::Promise<void> Service::start_fresh(Call& call, manager::OpenTemplate tpl) {
  uint64_t mem = mem_of(tpl.info);
  const std::string name = tpl.info.name;
  return admission_.acquire(name, mem, ms_duration(call.request.deadline_ms))
      .then([this, &call, tpl = kj::mv(tpl)](kj::Own<Ticket> ticket) mutable {
        call.timings.queue_ms = ms_since(call.t0);
        check_accepting();
        call.clone = kj::heap<Clone>(io_, reaper_, kj::mv(tpl), starter_, kj::mv(ticket));
        return call.clone->restored();
      })
      .then([this, &call] {
        call.timings.restore_ms = ms_since(call.t0);
        call.timings.pooled = call.clone->pooled();
        uint64_t t = now_ns();
        // The reseed and the handler's call go with the connection request (one round trip
        // for the three; the agent runs no handler before its reseed is done), made again on
        // a new connection if the guest refused this one (Clone::connect_with).
        auto reseeded = kj::heap<kj::Promise<void>>(nullptr);
        auto& r = *reseeded;
        return call.clone
            ->connect_with([this, &call, &r, t](AgentLink& agent) {
              r = agent.resumed_fresh().then([&call, t] { call.timings.connect_ms = ms_since(t); });
              call.invoked = send_invoke(call, agent);
            })
            .then([&call, &r] {
              return call.clone->guard(kj::mv(r), "reseeding the clone (agent.resumed)");
            })
            .attach(kj::mv(reseeded));
      });
}

kj::Promise<client::InvokeResult> Service::send_invoke(Call& call, AgentLink& agent) {
  // A copy of the payload: a failed clone's call may still go to the CRIU fallback with it.
  client::InvokeRequest req = manager::invoke_request_for(
      call.clone->info(), call.request.payload, std::chrono::milliseconds(call.request.timeout_ms));
  return call.clone->guard(agent.invoke(req), "invoking the handler");
}

kj::Promise<CallResult> Service::run_handler(Call& call) {
  uint64_t t_invoke = now_ns();
  kj::Promise<client::InvokeResult> invoked = nullptr;
  KJ_IF_MAYBE (sent, call.invoked) {
    invoked = kj::mv(*sent);
    call.invoked = nullptr;
  } else {
    invoked = send_invoke(call, call.clone->agent());
  }
  return invoked.then([this, &call, t_invoke](client::InvokeResult result) {
    call.timings.invoke_ms = ms_since(t_invoke);
    call.timings.handler_ms = static_cast<double>(result.duration_ns) / 1e6;
    return learn_written(call)
        .then([this, &call]() -> kj::Promise<void> {
          if (!call.clone || !options_.vcpu_counts) return kj::READY_NOW;
          // A warm clone: since it was made, i.e. from its resume (a held warm clone runs no
          // guest code). A fresh clone: its whole life, from its restore to the answer (and
          // what its guest did before the sample), whose first guest instruction ran for this
          // call; its control link is made now (before the answer, within its total).
          ControlLink::Sample from;  // zero: a fresh clone's counters start with it
          if (call.timings.warm) {
            KJ_IF_MAYBE (s, call.clone->made_sample) {
              from = *s;
            } else {
              return kj::READY_NOW;
            }
          }
          return call.clone->connect_control_link()
              .then([&call] {
                return call.clone->guard(call.clone->control().sample(), "reading its counters");
              })
              .then([&call, from](ControlLink::Sample now) {
                call.timings.vcpu_counted = true;
                call.timings.exits = now.exits - from.exits;
                call.timings.nested_page_faults = now.nested_page_faults - from.nested_page_faults;
                call.timings.written_pages = now.written_pages - from.written_pages;
              });
        })
        .then([&call, result = std::move(result)]() mutable {
          call.timings.total_ms = ms_since(call.t0);
          return CallResult{std::move(result), call.timings};
        });
  });
}

kj::Promise<void> Service::learn_written(Call& call) {
  if (!call.clone || !call.timings.warm || !options_.warm_touch) return kj::READY_NOW;
  const std::string dir = call.clone->generation_dir();
  auto touch = warm_touches_.find(dir);
  if (touch == warm_touches_.end() || touch->second.learned) return kj::READY_NOW;
  // What the probe clone wrote predicts what a warm clone writes only roughly (its guest came
  // another way: a fresh connection after the restore, not one made ahead, and in one testbed
  // run wrote 146 pages none of which the probe had): the pages this clone wrote, populated
  // ones included, are what its successors will write.
  return call.clone->control().written_ranges().then(
      [this, dir](std::vector<std::pair<uint64_t, uint64_t>> ranges) {
        WarmTouch& t = warm_touches_[dir];
        t.written = std::move(ranges);
        t.learned = true;
      },
      [this, dir](kj::Exception&& e) { warn_touch_once(dir, e.getDescription().cStr()); });
}

kj::Promise<kj::Own<Clone>> Service::start_clone(const std::string& name, uint64_t deadline_ms) {
  check_accepting();
  manager::OpenTemplate tpl = open(name);
  uint64_t mem = mem_of(tpl.info);
  return admission_.acquire(name, mem, ms_duration(deadline_ms))
      .then([this, tpl = kj::mv(tpl)](kj::Own<Ticket> ticket) mutable {
        check_accepting();
        auto clone = kj::heap<Clone>(io_, reaper_, kj::mv(tpl), starter_, kj::mv(ticket));
        auto& c = *clone;
        return c.restored()
            .then([&c] { return c.connect(/*reseed=*/true); })
            .then([clone = kj::mv(clone)]() mutable { return kj::mv(clone); });
      });
}

}  // namespace wisp::service
