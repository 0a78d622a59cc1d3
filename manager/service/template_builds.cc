#include "manager/service/template_builds.h"

#include <mutex>
#include <optional>

#include "manager/service/clone.h"  // throw_api_error

namespace wisp::service {

struct TemplateBuilds::Shared {
  std::mutex mu;
  std::vector<std::string> events;                      // guarded by mu
  bool done = false;                                    // guarded by mu
  std::optional<manager::TemplateCreated> result;       // guarded by mu
  std::string error;                                    // guarded by mu
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;  // guarded by mu
  manager::Cancellation cancel;

  // From the build thread: wakes the loop if it waits.
  void notify_locked() {
    if (wake) {
      wake->fulfill();
      wake = nullptr;
    }
  }
};

namespace {

using Shared = TemplateBuilds::Shared;

kj::Promise<manager::TemplateCreated> pump(std::shared_ptr<Shared> s,
                                           std::shared_ptr<TemplateBuilds::ProgressFn> progress) {
  std::vector<std::string> events;
  kj::Promise<void> wait = nullptr;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    events.swap(s->events);
    if (events.empty()) {
      if (s->done) {
        if (!s->error.empty()) throw_api_error(s->error);
        return std::move(*s->result);
      }
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      s->wake = kj::mv(paf.fulfiller);
      wait = kj::mv(paf.promise);
    }
  }
  if (!events.empty()) {
    kj::Promise<void> sent = kj::READY_NOW;
    for (std::string& e : events)
      sent = sent.then([progress, e = std::move(e)] { return (*progress)(e); });
    wait = kj::mv(sent);
  }
  return wait.then([s, progress]() mutable { return pump(kj::mv(s), kj::mv(progress)); });
}

}  // namespace

TemplateBuilds::TemplateBuilds() = default;
TemplateBuilds::~TemplateBuilds() = default;

size_t TemplateBuilds::running() const { return threads_.size(); }

kj::Promise<manager::TemplateCreated> TemplateBuilds::start(
    manager::TemplateSpec spec, ProgressFn progress, std::unique_ptr<manager::StandbyVmm> standby) {
  // Job is a std::function (copyable): the standby rides in a shared holder and is moved out
  // by the job's one call, on the build's thread (one thread at a time owns a StandbyVmm).
  auto held = std::make_shared<std::unique_ptr<manager::StandbyVmm>>(std::move(standby));
  return run(
      [spec = std::move(spec), held](const manager::Progress& report,
                                     manager::Cancellation* cancel) {
        return manager::create_template(spec, report, cancel, std::move(*held));
      },
      std::move(progress));
}

kj::Promise<manager::TemplateCreated> TemplateBuilds::run(Job job, ProgressFn progress) {
  auto s = std::make_shared<Shared>();
  std::thread t([s, job = std::move(job)] {
    auto report = [&s](const std::string& message) {
      std::lock_guard<std::mutex> lock(s->mu);
      s->events.push_back(message);
      s->notify_locked();
    };
    std::optional<manager::TemplateCreated> result;
    std::string error;
    try {
      result = job(report, &s->cancel);
    } catch (const manager::VmFailed& e) {
      error = std::string("vm-failed: ") + e.what();
    } catch (const Error& e) {
      error = std::string("bad-request: ") + e.what();
    } catch (const std::exception& e) {
      error = std::string("template create failed: ") + e.what();
    }
    std::lock_guard<std::mutex> lock(s->mu);
    s->result = std::move(result);
    s->error = error;
    s->done = true;
    s->notify_locked();
  });
  threads_.add(s, std::move(t));
  auto fn = std::make_shared<ProgressFn>(std::move(progress));
  return pump(s, fn).attach(kj::defer([s] { s->cancel.cancel(); }));
}

}  // namespace wisp::service
