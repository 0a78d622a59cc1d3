// Runtime directories of managers that died (a SIGKILLed `wisp invoke` runs no destructor):
// each RuntimeDir is owned through a lock on the directory itself (flock, released by the
// kernel however its process ends), so the next RuntimeDir made in the same place removes
// those nobody holds any more. A directory counts only with its marker file, so nothing else
// named wisp-* is ever touched.
#pragma once

#include <string>

#include "base/unique_fd.h"

namespace wisp::manager {

// Marks `staged` (a new, hidden directory) as a runtime directory, locks it for this process
// and renames it to `final_path`: the sweep never sees it unlocked. Returns the lock, held as
// long as the descriptor is open (close-on-exec: no child holds it). Throws Error.
UniqueFd own_runtime_dir(const std::string& staged, const std::string& final_path);

// Removes every runtime directory in `base` (named wisp-*, owned by this euid, marked) whose
// owner has died. Failures are skipped: a leftover is harmless and retried next time.
void sweep_dead_runtime_dirs(const std::string& base);

}  // namespace wisp::manager
