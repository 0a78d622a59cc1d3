#include "vmm/main/machine_control.h"

#include <algorithm>

#include "base/clock.h"
#include "base/error.h"
#include "base/version.h"
#include "snapshot/machine_snapshot.h"
#include "snapshot/working_set.h"

namespace wisp {

control::SnapshotReport MachineControl::snapshot(const control::SnapshotRequest& request) {
  if (request.diff && restored_from_dir_.empty())
    throw Error("snapshot --diff: this VM was booted, not restored; a diff needs a parent");
  bool was_paused = machine_.paused();
  uint64_t t0 = now_ns();
  machine_.pause(/*hold_clock=*/false);
  control::SnapshotReport report;
  report.pause_ms = ms_since(t0);
  snapshot::SaveResult r;
  try {
    uint64_t t1 = now_ns();
    MachineState state = machine_.save_state();
    double collect_ms = ms_since(t1);
    snapshot::SaveOptions options;
    options.diff = request.diff;
    options.parent_dir = restored_from_dir_;
    options.parent_id = restored_from_id_;
    options.creator_version = kWispVersion;
    snapshot::SnapshotFiles files{request.state_fd, request.memory_fd, request.dir};
    r = snapshot::save_machine_snapshot(files, state, machine_.memory(), options);
    r.state_ms += collect_ms;
  } catch (...) {
    if (!was_paused) machine_.resume();
    throw;
  }
  if (!was_paused) machine_.resume();
  report.id = r.id;
  report.diff = request.diff;
  report.state_ms = r.state_ms;
  report.memory_ms = r.memory_ms;
  report.total_ms = ms_since(t0);
  report.memory_file_bytes = r.memory_file_bytes;
  report.memory_disk_bytes = r.memory_disk_bytes;
  report.pages_written = r.pages_written;
  report.pages_in_layer = r.pages_in_layer;
  return report;
}

control::MemoryStats MachineControl::stats() {
  const GuestMemory& mem = machine_.memory();
  auto count = [](const std::vector<bool>& v) {
    return static_cast<uint64_t>(std::count(v.begin(), v.end(), true));
  };
  VcpuCounts c = machine_.vcpu_counts();
  return {count(mem.resident_pages()),
          mem.is_file_private() ? count(mem.written_pages()) : 0,
          mem.page_count(),
          {c.available, c.exits, c.nested_page_faults, c.pages_mapped, c.halt_exits, c.mmio_exits,
           c.io_exits}};
}

std::vector<std::pair<uint64_t, uint64_t>> MachineControl::resident_ranges() {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const snapshot::PageRange& r : snapshot::page_ranges(machine_.memory().resident_pages()))
    out.emplace_back(r.first, r.count);
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> MachineControl::written_ranges() {
  const GuestMemory& mem = machine_.memory();
  if (!mem.is_file_private())
    throw Error("a VM that was not restored has no written pages to list");
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const snapshot::PageRange& r : snapshot::page_ranges(mem.written_pages()))
    out.emplace_back(r.first, r.count);
  return out;
}

uint64_t MachineControl::populate_writable(
    const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  const GuestMemory& mem = machine_.memory();
  uint64_t pages = 0;
  // All checked before any is populated: a bad list changes nothing.
  for (const auto& [first, count] : ranges) {
    if (count == 0 || first > mem.page_count() || count > mem.page_count() - first)
      throw Error("populateWritable: pages " + std::to_string(first) + "+" + std::to_string(count) +
                  " are not inside guest memory (" + std::to_string(mem.page_count()) + " pages)");
    pages += count;
  }
  for (const auto& [first, count] : ranges) mem.populate_writable(first, count);
  return pages;
}

ControlServiceFactory machine_control(std::string dir, std::string id) {
  return [dir = std::move(dir), id = std::move(id)](Machine& machine) {
    return std::make_unique<MachineControl>(machine, dir, id);
  };
}

}  // namespace wisp
