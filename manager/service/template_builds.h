// Template creation for serve: manager::create_template blocks for seconds to minutes (a boot,
// warm-up calls, a snapshot), so it runs on a thread of its own (as does a fork's snapshot); its
// progress lines and its result come back to serve's loop through a cross-thread fulfiller.
//
// Threads: start() on the loop thread; each build on its own thread. The destructor cancels
// builds still running (their VM is killed) and joins every thread.
#pragma once

#include <kj/async.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "manager/service/job_threads.h"
#include "manager/template_create.h"

namespace wisp::service {

class TemplateBuilds {
 public:
  // Receives each progress line on the loop; the next waits for its promise (flow control).
  using ProgressFn = std::function<kj::Promise<void>(const std::string& message)>;

  // Out of line: Shared is complete only in the .cc.
  TemplateBuilds();
  ~TemplateBuilds();  // cancels the jobs still running, joins every thread (JobThreads)
  TemplateBuilds(const TemplateBuilds&) = delete;
  TemplateBuilds& operator=(const TemplateBuilds&) = delete;

  // Runs create_template(spec). Fails with "vm-failed: ..." when the VM failed, else
  // "bad-request: ..." with create_template's message. Cancelling the promise cancels the
  // build (its VM is killed; nothing is published). `standby` (may be null): a VMM of serve's
  // pool that boots the VM (create_template's), handed to the build's thread.
  kj::Promise<manager::TemplateCreated> start(manager::TemplateSpec spec, ProgressFn progress,
                                              std::unique_ptr<manager::StandbyVmm> standby = {});
  // Any blocking template job the same way (Sandbox.snapshot's fork_template): its errors map
  // as start()'s; `job` gets the progress callback and the cancellation (it may ignore it).
  using Job = std::function<manager::TemplateCreated(const manager::Progress& progress,
                                                     manager::Cancellation* cancellation)>;
  kj::Promise<manager::TemplateCreated> run(Job job, ProgressFn progress);
  size_t running() const;

  struct Shared;

 private:
  JobThreads<Shared> threads_;
};

}  // namespace wisp::service
