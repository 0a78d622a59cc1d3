// A live clone VM on serve's loop: its VMM process (clone_start.h), the template generation it
// was restored from (held: a rebuild or removal meanwhile leaves it be), its admission ticket,
// and its agent and control links once started. Destroying a Clone drops the links and hands
// the process and ticket to the Reaper, so every way out of a call (result, error, a client
// that cancelled) destroys the VM.
//
// Threads: serve's loop thread.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <functional>
#include <memory>
#include <string>

#include "manager/service/admission.h"
#include "manager/service/clone_start.h"
#include "manager/service/reaper.h"
#include "manager/service/vm_links.h"
#include "manager/template_store.h"

namespace wisp::service {

[[noreturn]] void throw_api_error(const std::string& message);

// Template generation `tpl` held once more (a duplicate of its lock): for work that must keep
// the generation's files whatever becomes of `tpl`. Throws Error.
manager::OpenTemplate duplicate_template(const manager::OpenTemplate& tpl);

class Clone {
 public:
  // Starts the VMM: a standby of the pool or a spawned restore (clone_start.h); throws
  // "vm-failed: ..." when it cannot start. `ticket` is its admission.
  // `background`: a warm clone, made ahead of demand (CloneStarter::start).
  Clone(kj::AsyncIoContext& io, Reaper& reaper, manager::OpenTemplate tpl, CloneStarter& starter,
        kj::Own<Ticket> ticket, bool background = false);
  ~Clone();
  Clone(const Clone&) = delete;
  Clone& operator=(const Clone&) = delete;

  // Resolves once the VMM has rebuilt the guest (ready line): the restore.
  kj::Promise<void> restored();
  // Connects its agent (retrying while the guest resets its vsock). `reseed`: the connection
  // is confirmed by agent.resumed (fresh entropy and clock: a clone just restored needs it
  // before anything else) rather than by a ping, one round trip less.
  kj::Promise<void> connect(bool reseed = false);
  // Connects its agent as connect() does, but makes the first calls (`first_calls`, given the
  // new link) before the guest has accepted it, so they travel with the connection request
  // (AgentConnectOptions::first_calls: called again on a new link after a refusal). Resolves
  // once the guest accepted; agent() is the link from then on.
  kj::Promise<void> connect_with(std::function<void(AgentLink&)> first_calls);
  // Connects its VMM control socket (for pause/resume), once.
  kj::Promise<void> connect_control_link();

  // `call`, or "vm-failed: WHAT ... VMM log" when the VMM exits before it ends or the call
  // fails because the VM went away (the agent's connection dropped).
  template <typename T>
  kj::Promise<T> guard(kj::Promise<T> call, const std::string& what) {
    return call.exclusiveJoin(exited().then([this, what]() -> T { throw_vm_failed(what); }))
        .catch_([this, what](kj::Exception&& e) -> T { rethrow_failure(kj::mv(e), what); });
  }

  AgentLink& agent() { return *agent_; }
  ControlLink& control() { return *control_; }  // after connect_control_link()
  const manager::TemplateInfo& info() const { return tpl_.info; }
  const std::string& generation_dir() const { return tpl_.dir; }
  // Its template generation held once more (a duplicate of the lock): for work off the loop
  // that must keep the generation's files even if this clone goes meanwhile. Throws Error.
  manager::OpenTemplate hold_template() const;
  std::string control_path() const { return process_->control_path(); }
  bool pooled() const { return process_->pooled(); }
  // Its VMM's counters once it was made, for a warm clone (ServeOptions::vcpu_counts).
  kj::Maybe<ControlLink::Sample> made_sample;
  bool alive() { return process_->vmm().alive(); }
  double jail_ms() const { return jail_ms_; }
  // Its VMM's CPU priority: background while it is made ahead of demand (a warm clone), normal
  // once a call has it (manager/vmm_priority.h).
  void set_background(bool background);
  // Stops or continues its VMM's processes (manager::set_vmm_stopped): a warm clone being made
  // waits so while calls run.
  void set_stopped(bool stopped);
  bool stopped() const { return stopped_; }
  // SIGKILLs the VMM now (a sandbox killed mid-call); the destructor still reaps it.
  void terminate() { process_->vmm().terminate(); }
  // Resolves when the VMM process exits.
  kj::Promise<void> exited();
  [[noreturn]] void throw_vm_failed(const std::string& what);
  // A failed call on this VM as the API's error: one that already carries an error word (an
  // API error of ours) as it is; a method the guest's agent lacks "bad-request: ..."; anything
  // else (the VM died, its agent dropped the connection, did not answer in time, or answered
  // with an exception) "vm-failed: WHAT: ..." with the VMM's log.
  [[noreturn]] void rethrow_failure(kj::Exception&& e, const std::string& what);

 private:
  // connect()'s and connect_with()'s: `o` completed with this VM's socket, the deadline and
  // the VMM's liveness, its link kept as agent().
  kj::Promise<void> connect_agent_link(AgentConnectOptions o);

  kj::AsyncIoContext& io_;
  Reaper& reaper_;
  manager::OpenTemplate tpl_;
  std::unique_ptr<CloneProcess> process_;
  kj::Maybe<kj::Own<Ticket>> ticket_;
  kj::Own<kj::UnixEventPort::FdObserver> exit_watch_;
  // exit_watch_'s one readable promise, shared: an FdObserver keeps a single waiter, so each
  // guarded call awaiting it directly would cancel the one before it (a sandbox's concurrent
  // calls, a streamed process's write and wait) with "PromiseFulfiller was destroyed".
  kj::ForkedPromise<void> exited_ = nullptr;
  kj::Own<AgentLink> agent_;
  kj::Own<ControlLink> control_;
  double jail_ms_ = 0;
  bool stopped_ = false;  // set_stopped(true) last
};

}  // namespace wisp::service
