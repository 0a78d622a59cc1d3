// Service's CRIU fallback (issue 17): a call of a worker template whose VM snapshot does not
// fit this host (manager/snapshot_fit.h) is served from the template's CRIU image, as `wisp
// invoke` does (manager::invoke_from_criu_image: a cold boot, the worker restored from the
// image, reseeded with the call), on a thread of ThreadJobs; then the snapshot is re-made in
// the background once per generation (manager::rebuild_template), after which calls of the
// new generation are warm again.
#include <chrono>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "manager/invoke.h"
#include "manager/service/service.h"
#include "manager/template_rebuild.h"

namespace wisp::service {
namespace {

constexpr uint64_t kDefaultMemMib = 256;  // as service.cc's
// A re-make waits this long for capacity for its VM before it gives up (the next fallback
// call tries again).
constexpr uint64_t kRemakeDeadlineMs = 10 * 60 * 1000;

uint64_t mem_of(const manager::TemplateInfo& t) { return t.mem_mib ? t.mem_mib : kDefaultMemMib; }

kj::Duration ms_duration(uint64_t ms) { return static_cast<int64_t>(ms) * kj::MILLISECONDS; }

}  // namespace

kj::Promise<CallResult> Service::fresh_or_fall_back(Call& call, manager::OpenTemplate tpl) {
  const std::string name = tpl.info.name;
  if (const std::string* why = fallbacks_.unfit(tpl.dir)) {
    std::string reason = *why;
    return fall_back(call, std::make_shared<manager::OpenTemplate>(kj::mv(tpl)), reason);
  }
  // A snapshot whose unfitness a stat and a header's read show is not given to a standby.
  if (std::string reason = manager::snapshot_unfit_before_restore(tpl); !reason.empty()) {
    note_unfit(name, tpl.dir, reason);
    return fall_back(call, std::make_shared<manager::OpenTemplate>(kj::mv(tpl)), reason);
  }
  // Held past the clone (one dup: cheap): the fallback needs the generation the clone failed
  // on, whether or not the clone was made.
  auto held = std::make_shared<manager::OpenTemplate>(duplicate_template(tpl));
  return start_fresh(call, kj::mv(tpl))
      .then([this, &call] { return after_ready(call, kj::READY_NOW); },
            [this, &call, held](kj::Exception&& e) -> kj::Promise<CallResult> {
              std::string reason = unfit_after_failure(*held, e);
              if (reason.empty() || draining_) kj::throwFatalException(kj::mv(e));
              call.clone = nullptr;  // its ticket back once it is reaped
              return fall_back(call, held, reason);
            });
}

std::string Service::unfit_after_failure(const manager::OpenTemplate& tpl, const kj::Exception& e) {
  std::string d = e.getDescription().cStr();
  // Only a VM that failed (its restore, or its start): not a lack of capacity, a drain, ...
  if (d.rfind("vm-failed:", 0) != 0 || !manager::has_criu_fallback(tpl)) return "";
  std::string reason = manager::snapshot_unfit_after_failure(tpl, d, /*vm_failed=*/true);
  if (!reason.empty()) note_unfit(tpl.info.name, tpl.dir, reason);
  return reason;
}

void Service::note_unfit(const std::string& name, const std::string& generation,
                         const std::string& reason) {
  if (fallbacks_.mark_unfit(generation, reason))
    LOG_WARN(
        "serve: template %s: snapshot does not fit this host (%s); its calls fall back to "
        "the CRIU image until the snapshot is re-made",
        name.c_str(), reason.c_str());
  if (warm_.pause(name))
    LOG_WARN("serve: template %s: no more warm clones while its snapshot does not fit this host",
             name.c_str());
}

kj::Promise<CallResult> Service::fall_back(Call& call, std::shared_ptr<manager::OpenTemplate> tpl,
                                           std::string reason) {
  const std::string name = tpl->info.name;
  // Admitted like a clone, for what is left of the call's deadline.
  double spent = ms_since(call.t0);
  uint64_t deadline = call.request.deadline_ms;
  uint64_t left =
      spent >= static_cast<double>(deadline) ? 0 : deadline - static_cast<uint64_t>(spent);
  uint64_t t_wait = now_ns();
  return admission_.acquire(name, mem_of(tpl->info), ms_duration(left))
      .then([this, &call, tpl, reason, t_wait](kj::Own<Ticket> ticket) {
        call.timings.queue_ms += ms_since(t_wait);
        check_accepting();
        manager::InvokeRequest req;
        req.payload = std::move(call.request.payload);
        req.timeout = std::chrono::milliseconds(call.request.timeout_ms);
        req.jail = options_.jail;
        // Timings of the job count from its start; restore_ms is then placed after what the
        // call spent before (the wait, a failed restore).
        double before_ms = ms_since(call.t0);
        return jobs_
            .run<manager::InvokeOutcome>(
                [tpl, req = std::move(req), reason](manager::Cancellation* cancel) {
                  return manager::invoke_from_criu_image(*tpl, req, reason, cancel);
                },
                "vm-failed", kj::mv(ticket))
            .then([&call, before_ms](manager::InvokeOutcome o) {
              CallTimings& t = call.timings;
              t.criu_fallback = true;
              t.restore_ms = before_ms + o.restore_ms;
              t.reconnect_ms = 0;
              t.connect_ms = 0;
              t.invoke_ms = o.invoke_ms;
              t.handler_ms = static_cast<double>(o.result.duration_ns) / 1e6;
              t.boot_ms = o.boot_ms;
              t.criu_restore_ms = o.criu_ms;
              t.criu_guest_ms = o.criu_guest_ms;
              t.criu_upload_ms = o.criu_upload_ms;
              t.criu_unpack_ms = o.criu_unpack_ms;
              t.criu_mount_ms = o.criu_mount_ms;
              t.criu_drive_ms = o.criu_drive_ms;
              t.criu_source = o.criu_source;
              t.total_ms = ms_since(call.t0);
              return CallResult{std::move(o.result), t};
            });
      })
      .then([this, name, tpl](CallResult r) {
        // The worker was restored: a VM snapshot made from it on this host will fit.
        remake_snapshot(name, tpl->dir);
        return r;
      });
}

void Service::remake_snapshot(const std::string& name, const std::string& generation) {
  if (!remake_snapshots_ || draining_ || !fallbacks_.claim_rebuild(generation)) return;
  // Warnings, as the rest of the fallback's lines: serve logs nothing less by default, and a
  // snapshot that does not fit is degraded service an operator should see begin and end.
  LOG_WARN(
      "serve: template %s: re-making its VM snapshot for this host in the background "
      "(generation %s)",
      name.c_str(), generation.c_str());
  uint64_t mem = 0;
  try {
    mem = mem_of(manager::read_template(name));
  } catch (const Error& e) {
    LOG_WARN("serve: template %s: its VM snapshot is not re-made: %s", name.c_str(), e.what());
    return;
  }
  JailFlags jail = options_.jail;
  uint64_t t0 = now_ns();
  background_.add(admission_.acquire(name, mem, ms_duration(kRemakeDeadlineMs))
                      .then(
                          [this, name, generation, jail, t0](kj::Own<Ticket> ticket) {
                            return run_remake(name, generation, jail, t0, kj::mv(ticket));
                          },
                          [this, name, generation](kj::Exception&& e) {
                            // No capacity for its VM now: a later fallback call tries again.
                            fallbacks_.release_rebuild(generation);
                            LOG_WARN("serve: template %s: its VM snapshot is not re-made now: %s",
                                     name.c_str(), e.getDescription().cStr());
                          }));
}

kj::Promise<void> Service::run_remake(const std::string& name, const std::string& generation,
                                      JailFlags jail, uint64_t t0, kj::Own<Ticket> ticket) {
  return jobs_
      .run<manager::TemplateRebuilt>(
          [name, generation, jail, t0](manager::Cancellation* cancel) {
            manager::RebuildOptions o;
            o.only_generation = generation;
            o.skip_if_busy = true;
            o.jail = jail;
            o.start_ns = t0;
            auto progress = [&name](const std::string& line) {
              LOG_INFO("serve: template %s: rebuild: %s", name.c_str(), line.c_str());
            };
            return manager::rebuild_template(name, o, progress, cancel);
          },
          "rebuild", kj::mv(ticket))
      .then(
          [this, name, generation](manager::TemplateRebuilt r) {
            fallbacks_.forget(generation);
            if (!r.skipped.empty())
              LOG_WARN("serve: template %s: its VM snapshot is not re-made: %s", name.c_str(),
                       r.skipped.c_str());
            else
              LOG_WARN(
                  "serve: template %s: VM snapshot re-made for this host in %.0f ms "
                  "(boot %.0f, criu %.0f, snapshot %.0f): its calls are warm again",
                  name.c_str(), r.total_ms, r.boot_ms, r.criu_ms, r.snapshot_ms);
            // A new generation (or the template changed meanwhile): warm clones again.
            warm_.resume(name);
          },
          [this, name, generation](kj::Exception&& e) {
            if (fallbacks_.rebuild_failed(generation))
              LOG_WARN(
                  "serve: template %s: re-making its VM snapshot failed (the next call from "
                  "its CRIU image tries again): %s",
                  name.c_str(), e.getDescription().cStr());
            else
              LOG_WARN(
                  "serve: template %s: re-making its VM snapshot failed %d times (its calls "
                  "keep falling back to the CRIU image; `wisp template rebuild %s` retries): %s",
                  name.c_str(), CriuFallbacks::kRebuildAttempts, name.c_str(),
                  e.getDescription().cStr());
          });
}

}  // namespace wisp::service
