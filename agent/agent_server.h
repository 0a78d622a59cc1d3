// The Agent RPC interface (api/agent.capnp) as served inside the guest.
#pragma once

#include <kj/function.h>

#include <map>
#include <string>

#include "agent/invocation.h"
#include "agent/scratch_files.h"
#include "agent/spare_sandbox.h"
#include "agent/worker.h"
#include "api/agent.capnp.h"

namespace wisp::agent {

struct AgentTimes {
  uint64_t started_ns = 0;  // CLOCK_BOOTTIME at main()
  uint64_t mounted_ns = 0;  // early mounts done
  uint64_t cgroups_ns = 0;  // cgroup controllers enabled
  uint64_t ready_ns = 0;    // CLOCK_BOOTTIME when the vsock listener was up
};

class AgentImpl final : public api::Agent::Server {
 public:
  // `power_off` ends the VM; it is called from a timer shortly after shutdown() replied.
  AgentImpl(AgentServices& services, const AgentTimes& times, kj::Function<void()> power_off);
  ~AgentImpl();

 protected:
  kj::Promise<void> ping(PingContext context) override;
  kj::Promise<void> invoke(InvokeContext context) override;
  kj::Promise<void> startWorker(StartWorkerContext context) override;
  kj::Promise<void> stopWorker(StopWorkerContext context) override;
  kj::Promise<void> prepareSnapshot(PrepareSnapshotContext context) override;
  kj::Promise<void> resumed(ResumedContext context) override;
  kj::Promise<void> shutdown(ShutdownContext context) override;
  kj::Promise<void> execStream(ExecStreamContext context) override;
  kj::Promise<void> putFile(PutFileContext context) override;
  kj::Promise<void> getFile(GetFileContext context) override;
  kj::Promise<void> criuCheck(CriuCheckContext context) override;
  kj::Promise<void> checkpointWorker(CheckpointWorkerContext context) override;
  kj::Promise<void> restoreWorker(RestoreWorkerContext context) override;
  kj::Promise<void> restoreWorkerFromDrive(RestoreWorkerFromDriveContext context) override;
  kj::Promise<void> touchMemory(TouchMemoryContext context) override;

 private:
  AgentServices& services_;
  const AgentTimes& times_;
  kj::Function<void()> power_off_;
  std::map<std::string, kj::Own<Worker>> workers_;
  bool shutting_down_ = false;
  // The scratch space (/scratch); opened on first use, absent outside a guest.
  kj::Maybe<ScratchDir> scratch_;

  // The pre-forked exec sandbox (spare_sandbox.h): at most one, made for the handler of the
  // last exec call (or prepareSnapshot's `spare`), replaced after each call's reply.
  kj::Own<SpareSandbox> spare_;
  kj::Promise<void> spare_task_ = nullptr;
  // Set by prepareSnapshot, cleared by resumed: a spare in a snapshot must not exec before the
  // clone's reseed, or clones would share what it draws first.
  bool awaiting_resume_ = false;
  // A spare's set-up failed for this sandbox: none is made for it again (the fresh path
  // fails the same way and says why, each call).
  kj::Maybe<HandlerConfig> spare_failed_for_;

  ScratchDir& scratch();
  // Keeps a worker restored from a CRIU image (either path) as the warm worker of its name.
  void adopt_restored(kj::Own<Worker> worker);
  // The spare, handed over, when `config` fits it and it is waiting; else nullptr.
  kj::Maybe<StartedSandbox> take_spare(const HandlerConfig& config);
  // Makes a spare for `config` unless the one held fits it.
  void make_spare(const HandlerConfig& config);
  // make_spare once the current event's work (the reply being sent) is done.
  void make_spare_later(const HandlerConfig& config);
  // Drops a dead spare, noting a failed set-up.
  void drop_dead_spare();
};

// Converts and validates a Handler from the wire (throws kj::Exception on bad input).
// `terminal_allowed`: execStream only; elsewhere Handler.terminal is refused (an invoke's
// output is its result, a worker talks frames on its stdio, a spare is made in advance).
HandlerConfig handler_config_from_wire(api::Handler::Reader handler, bool terminal_allowed = false);

// Writes a result to the wire.
void fill_result(const InvocationResult& r, api::InvokeResult::Builder out);

}  // namespace wisp::agent
