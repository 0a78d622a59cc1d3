#include "vmm/control/pause_holds.h"

namespace wisp {

void PauseHolds::paused(ConnectionId c, bool lasting) {
  if (lasting)
    lasting_ = true;
  else
    holders_.insert(c);
}

void PauseHolds::resumed() {
  holders_.clear();
  lasting_ = false;
}

bool PauseHolds::closed(ConnectionId c) {
  if (holders_.erase(c) == 0) return false;
  return holders_.empty() && !lasting_;
}

}  // namespace wisp
