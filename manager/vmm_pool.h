// The pool of pre-spawned, pre-jailed VMMs (DESIGN.md's data path; issue 12): each a
// `wisp-vmm standby` that has exec'd, entered its jail (namespaces, root, cgroup, uid, no
// capabilities) and opened /dev/kvm, and waits on its order socket (api/standby_order.h) for
// the snapshot to restore. Taking one moves spawn, exec and jail off a clone's critical path.
//
// Memory limits: a VMM's cgroup memory.max (guest RAM + kVmmMemoryAllowance) is set when it is
// spawned, before the snapshot is known. So a standby belongs to a size class (StandbyClass:
// the most guest RAM and vCPUs it restores), its limits are the class's, and it refuses a
// larger snapshot; a pool holds one class. A service keeps one pool per class it needs (in
// practice one: its templates' largest machine), and counts the class's size against its
// memory budget for every standby.
//
// Threads: one thread owns a pool and the StandbyVmms taken from it (a service's KJ loop): no
// call blocks but StandbyVmm::wait_ready, and ready_fd() can be watched by an event loop.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/jail_flags.h"
#include "base/unique_fd.h"
#include "manager/agent_vm.h"
#include "manager/huge_page_layer.h"
#include "manager/vm_spec.h"

namespace wisp::manager {

// The largest machine a standby restores; its jail's limits are this machine's.
struct StandbyClass {
  uint64_t mem_bytes = 512ull << 20;
  uint32_t vcpus = 2;
};

// The memory file of the base layer of the snapshot at `snapshot_dir` (its own, or a diff's
// last parent's), its chain read with `drives` admitted as order_restore admits them (the
// file a HugePageLayer copies). Throws Error for a snapshot a restore would refuse.
std::string base_memory_file(const std::string& snapshot_dir,
                             const std::vector<std::string>& drives = {});

class StandbyVmm {
 public:
  // Spawns `wisp-vmm standby` in its own runtime directory, with a control socket when
  // `control`. Returns at once (it jails itself meanwhile). Throws Error when it cannot start.
  static std::unique_ptr<StandbyVmm> spawn(const JailFlags& jail, const StandbyClass& size,
                                           bool control = false);
  StandbyVmm(const StandbyVmm&) = delete;
  StandbyVmm& operator=(const StandbyVmm&) = delete;

  // Non-blocking: true once it reported "standby" (jailed, waiting for its order). Throws
  // VmFailed (with its log) when it died or said something else.
  bool standing_by();
  // Sends the order to restore the snapshot at `snapshot_dir`: reads its state files and applies
  // snapshot_trust.h's rules (parents in the diff's directory), opens each layer's state and
  // memory file and passes them. Quick (reads the small state files; waits for nothing). Needs
  // standing_by(). Throws Error for a snapshot it refuses (then this VMM is still standing by,
  // and may be ordered again) or VmFailed when the VMM is gone. `drives` ("PATH[,ro]" as for
  // AgentVm::restore, in slot order) are admitted as a restore admits them and passed open.
  // `layer`: the base layer's memory file passes as its copy there when it has one (the same
  // bytes, on 2 MiB pages: huge_page_layer.h).
  void order_restore(const std::string& snapshot_dir, const std::vector<std::string>& drives = {},
                     HugePageLayer* layer = nullptr);
  // Sends the order to boot `spec` as `wisp-vmm run` would (manager/standby_boot_order.cc):
  // opens its kernel, initrd and drives (regular files, no symlink at the last component) and
  // passes them; the command line is vmm_cmdline(spec), completed by the VMM as run completes
  // it. Throws Error for a spec a standby cannot boot (see can_boot; then it still stands by)
  // or VmFailed when the VMM is gone. Needs standing_by().
  void order_boot(const VmSpec& spec);
  // Whether a standby of `size` launched with `jail` boots `spec`: the machine within the
  // class, the same jail, no console file, no vsock CID, verbosity or timings of its own (its
  // launch arguments hold those). "" when it can, else why not.
  static std::string why_not_boot(const VmSpec& spec, const StandbyClass& size,
                                  const JailFlags& jail);
  // After order_restore or order_boot: readable when its answer is there (the ready line, or end of
  // file when it failed). For an event loop; then poll_ready().
  int ready_fd() const { return order_.get(); }
  // Non-blocking: the ready line ("ready LOADED_MS RESTORED_MS JAIL_MS", counted from the
  // order) once it came, nullopt before. Throws VmFailed with the VMM's log when it failed.
  std::optional<std::string> poll_ready();
  // Blocks up to `timeout` for poll_ready()'s line. Throws VmFailed.
  std::string wait_ready(std::chrono::milliseconds timeout);

  std::string vsock_uds() const { return vm_->dir().file("vsock.sock"); }
  std::string control_socket() const { return vm_->dir().file("control.sock"); }
  VmmChild& vmm() { return vm_->vmm(); }
  // After the ready line: the clone as an AgentVm (connect_agent, control, ...), which owns the
  // VMM and its directory from now on; this object is empty then.
  std::unique_ptr<AgentVm> release();

 private:
  enum class Stage { kStarting, kStandingBy, kOrdered, kReady };
  // Sends `text` with `fds`; the VMM is ordered then. Throws VmFailed when it is gone.
  void send_order(const std::string& text, const std::vector<int>& fds);
  StandbyVmm(std::unique_ptr<AgentVm> vm, UniqueFd order)
      : vm_(std::move(vm)), order_(std::move(order)) {}
  // One message from the VMM if there is one (non-blocking); throws VmFailed at end of file.
  std::optional<std::string> read_message();

  std::unique_ptr<AgentVm> vm_;
  UniqueFd order_;  // the manager's end of the order socketpair
  Stage stage_ = Stage::kStarting;
  std::string ready_line_;
};

class VmmPool {
 public:
  // Nothing is spawned before refill(). `target`: how many standbys it keeps.
  VmmPool(size_t target, JailFlags jail, StandbyClass size = {}, bool control = false);
  // Stops every VMM it still holds (all asked at once, then each reaped) and so their
  // runtime directories go.
  ~VmmPool();
  VmmPool(const VmmPool&) = delete;
  VmmPool& operator=(const VmmPool&) = delete;

  // One standing by, or nullptr when none is yet (never blocks). Drops the dead ones.
  std::unique_ptr<StandbyVmm> take();
  // Spawns standbys until it holds `target` (starting or standing by); drops the dead ones.
  // Never blocks on a VMM. Returns how many it spawned. A spawn that fails is kept in
  // last_error() and ends this round (the next call tries again).
  size_t refill();
  // How many stand by now (non-blocking).
  size_t idle();
  // How many it holds (starting or standing by).
  size_t size() const { return vmms_.size(); }
  size_t target() const { return target_; }
  const StandbyClass& size_class() const { return size_; }
  const std::string& last_error() const { return last_error_; }

 private:
  // Drops the ones that died (their errors into last_error_).
  void prune();

  size_t target_;
  JailFlags jail_;
  StandbyClass size_;
  bool control_;
  std::vector<std::unique_ptr<StandbyVmm>> vmms_;
  std::string last_error_;
};

}  // namespace wisp::manager
