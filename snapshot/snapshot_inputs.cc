#include "snapshot/snapshot_inputs.h"

#include <variant>

#include "base/error.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/state_file.h"

namespace wisp::snapshot {

SnapshotInputs snapshot_inputs(const std::string& dir) {
  SnapshotInputs in;
  std::string current = dir;
  for (uint32_t depth = 0;; ++depth) {
    if (depth > kMaxDiffDepth)
      throw Error(dir + ": more than " + std::to_string(kMaxDiffDepth) + " diff layers");
    std::string state_file = current + "/" + kStateFileName;
    SnapshotState st = read_state_file(state_file);
    in.files.push_back(state_file);
    in.files.push_back(current + "/" + kMemoryFileName);
    if (depth == 0) {
      in.mem_bytes = st.machine.mem_bytes;
      in.vcpus = static_cast<uint32_t>(st.machine.vcpus.size());
      for (const VirtioSlotState& slot : st.machine.virtio)
        if (const auto* drive = std::get_if<BlockSpec>(&slot.spec)) in.drives.push_back(*drive);
    }
    if (!st.is_diff()) return in;
    current = st.diff.parent_dir;
  }
}

}  // namespace wisp::snapshot
