// Starting a clone's VMM, the step the pool takes off the critical path: a pre-jailed
// `wisp-vmm standby` of the pool (manager/vmm_pool.h) is ordered to restore the snapshot, its
// files passed by descriptor; when none stands by (or the snapshot is one a standby cannot take:
// drives, a machine larger than the pool's size class), a `wisp-vmm restore` is spawned with
// --ready-fd in a runtime directory of its own. Either way: a ready line, a vsock and a control
// socket, a VmmChild.
//
// Threads: serve's loop thread makes and uses a CloneStarter and the CloneProcesses; a
// CloneProcess is destroyed on the Reaper's threads (the kill waits for the VMM to exit).
#pragma once

#include <kj/async-io.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "api/jail_flags.h"
#include "manager/huge_page_layer.h"
#include "manager/runtime_dir.h"
#include "manager/template_store.h"
#include "manager/vmm_child.h"
#include "manager/vmm_pool.h"

namespace wisp::service {

class CloneProcess {
 public:
  // Spawns the VMM restoring `snapshot_dir` with the snapshot's `drives` and NICs `net`, with
  // a control socket, jailed by `jail`; `memory` (may be invalid): its base memory file's copy
  // to map instead (--memory-fd). Throws wisp::Error when wisp-vmm cannot be started.
  CloneProcess(const std::string& snapshot_dir, const std::vector<std::string>& drives,
               const manager::VmNet& net, const JailFlags& jail, UniqueFd memory = {});
  // Orders `standby` (standing by, spawned with a control socket) to restore `snapshot_dir`.
  // Throws wisp::Error when it refuses the snapshot or is gone.
  // `layer` (may be null): the memory file's copy on 2 MiB pages, when it has one.
  CloneProcess(std::unique_ptr<manager::StandbyVmm> standby, const std::string& snapshot_dir,
               const std::vector<std::string>& drives, manager::HugePageLayer* layer);
  ~CloneProcess();
  CloneProcess(const CloneProcess&) = delete;
  CloneProcess& operator=(const CloneProcess&) = delete;

  std::string vsock_path() const;
  std::string control_path() const;
  manager::VmmChild& vmm();
  // True when a pre-jailed VMM of the pool restored it (Timings.pooled).
  bool pooled() const { return standby_ != nullptr; }
  manager::StandbyVmm* standby() { return standby_.get(); }

 private:
  std::unique_ptr<manager::RuntimeDir> dir_;  // a spawned restore: before vmm_, which dies first
  std::unique_ptr<manager::VmmChild> vmm_;
  std::unique_ptr<manager::StandbyVmm> standby_;  // or a standby of the pool
};

// Waits on `io`'s loop for the VMM's ready line (returned, without the newline). Fails with a
// kj::Exception carrying the VMM's log tail when it exits first.
kj::Promise<std::string> wait_ready(kj::AsyncIoContext& io, CloneProcess& process);

// Where clones come from: the pool of `pool_target` standbys (none when 0), else a spawn.
// The pool's restores map memory files from a huge-page layer of `huge_layer_mib` MiB
// (manager/huge_page_layer.h; none when 0 or when it cannot be mounted: then they map the
// store's files, and the constructor says why once).
class CloneStarter {
 public:
  CloneStarter(const JailFlags& jail, uint32_t pool_target, uint64_t huge_layer_mib = 0);
  // A clone of `tpl` on its way (wait_ready next). Throws wisp::Error. `background`: made
  // ahead of demand (a warm clone): a spawned restore at SCHED_IDLE (manager/vmm_priority.h),
  // leaving the pool's standbys to calls; its spawn and jail then use only idle CPU too.
  std::unique_ptr<CloneProcess> start(const manager::OpenTemplate& tpl, bool background = false);
  // A standby of the pool to boot `vm` (a template build: create_template), or nullptr when
  // none stands by or none can (StandbyVmm::why_not_boot: the class, the jail, ...).
  std::unique_ptr<manager::StandbyVmm> take_for_boot(const manager::VmSpec& vm);
  // Starts the copy of `tpl`'s memory file in the huge-page layer (if any) ahead of its first
  // restore: serve does it for the store's templates when it starts.
  void prepare(const manager::OpenTemplate& tpl) { layer_copy(tpl); }
  // Spawns standbys up to the target (never blocks on a VMM); serve calls it on a timer and
  // after each take.
  void refill();
  uint32_t idle();
  uint32_t target() const { return pool_ ? static_cast<uint32_t>(pool_->target()) : 0; }
  // The huge-page layer, or nullptr (stats).
  const manager::HugePageLayer* huge_layer() const { return layer_.get(); }

 private:
  // The copy of `tpl`'s base memory file in the layer, or an invalid fd (none yet, or no layer).
  UniqueFd layer_copy(const manager::OpenTemplate& tpl);

  JailFlags jail_;
  std::unique_ptr<manager::HugePageLayer> layer_;   // before pool_: standbys go first
  std::map<std::string, std::string> base_memory_;  // by snapshot directory (never rewritten)
  std::unique_ptr<manager::VmmPool> pool_;
  std::string logged_error_;
};

}  // namespace wisp::service
