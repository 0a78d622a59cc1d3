#include "snapshot/snapshot_inputs.h"

#include <sys/stat.h>

#include <variant>

#include "snapshot/snapshot_dir.h"
#include "snapshot/working_set.h"

namespace wisp::snapshot {

SnapshotInputs snapshot_inputs(const SnapshotChain& chain) {
  SnapshotInputs in;
  for (const std::string& dir : chain.dirs) {
    in.files.push_back(dir + "/" + kStateFileName);
    in.files.push_back(dir + "/" + kMemoryFileName);
  }
  std::string ws = chain.dirs.front() + "/" + kWorkingSetFileName;
  struct stat st;
  if (::lstat(ws.c_str(), &st) == 0 && S_ISREG(st.st_mode)) in.working_set = ws;
  std::string written = chain.dirs.front() + "/" + kWrittenSetFileName;
  if (::lstat(written.c_str(), &st) == 0 && S_ISREG(st.st_mode)) in.written_set = written;
  const MachineState& top = chain.states.front().machine;
  in.mem_bytes = top.mem_bytes;
  in.vcpus = static_cast<uint32_t>(top.vcpus.size());
  for (const VirtioSlotState& slot : top.virtio) {
    if (const auto* drive = std::get_if<BlockSpec>(&slot.spec)) in.drives.push_back(*drive);
    if (const auto* net = std::get_if<NetSpec>(&slot.spec)) in.nets.push_back(*net);
  }
  return in;
}

}  // namespace wisp::snapshot
