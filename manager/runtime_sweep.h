// Runtime directories of managers that died (a SIGKILLed `wisp invoke` runs no destructor):
// each RuntimeDir is owned through a lock on the directory itself (flock, released by the
// kernel however its process ends), so the next RuntimeDir made in the same place removes
// those nobody holds any more. A directory counts only with its marker file, so nothing else
// named wisp-* is ever touched.
#pragma once

#include <string>

namespace wisp::manager {

// Marks the directory `dir_fd` (at `path`, already locked by this process: make_locked_temp_dir)
// as a runtime directory, so that the sweep takes it once its lock is gone. Marked only after
// it is locked, the sweep never sees it marked and free while it is in use. Throws Error.
void mark_runtime_dir(int dir_fd, const std::string& path);

// Removes every runtime directory in `base` (named wisp-*, owned by this euid, marked) whose
// owner has died. Failures are skipped: a leftover is harmless and retried next time.
void sweep_dead_runtime_dirs(const std::string& base);

}  // namespace wisp::manager
