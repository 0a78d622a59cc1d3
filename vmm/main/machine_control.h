// What a running wisp VMM does for its control channel (api/vmm.capnp, served by
// vmm/control/control_server.h): pause, resume, snapshot and memory stats of one machine. It
// joins the machine and the snapshot writer, which is why it lives with the VMM's entry.
#pragma once

#include <string>

#include "api/vmm_control.h"
#include "vmm/machine/machine.h"

namespace wisp {

// Every method runs on the machine's event-loop thread (ControlServer's rule), so pause() and
// save_state() never race a device writing guest memory.
class MachineControl final : public control::Service {
 public:
  // `restored_from_dir`/`_id`: the snapshot this VM was restored from ("" when it was booted),
  // the parent a diff snapshot is layered on.
  MachineControl(Machine& machine, std::string restored_from_dir, std::string restored_from_id)
      : machine_(machine),
        restored_from_dir_(std::move(restored_from_dir)),
        restored_from_id_(std::move(restored_from_id)) {}

  void pause(bool hold_clock) override { machine_.pause(hold_clock); }
  void resume() override { machine_.resume(); }
  // Pauses the VM, writes the snapshot into the request's two files (the manager's, checked by
  // the control server), resumes it unless it was paused before. The VM keeps running after a
  // failed snapshot. Throws Error saying what was wrong.
  control::SnapshotReport snapshot(const control::SnapshotRequest& request) override;
  control::MemoryStats stats() override;
  std::vector<std::pair<uint64_t, uint64_t>> resident_ranges() override;
  std::vector<std::pair<uint64_t, uint64_t>> written_ranges() override;
  uint64_t populate_writable(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) override;

 private:
  Machine& machine_;
  std::string restored_from_dir_;
  std::string restored_from_id_;
};

// The factory MachineConfig::control_service takes, for a VM booted (both empty) or restored
// from the snapshot `dir` whose id is `id`.
ControlServiceFactory machine_control(std::string dir = "", std::string id = "");

}  // namespace wisp
