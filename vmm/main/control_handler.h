// The commands a running wisp VMM answers on its control socket (`wisp-vmm run|restore
// --control-socket`); the manager's client side is manager/vmm_control.h. One command per line, one
// reply line:
//
//   ping                       -> ok
//   pause | resume             -> ok
//   snapshot [--diff] DIR      -> ok {"id":..., "pause_ms":..., "save_ms":..., ...}
//                                 (pauses, writes the snapshot directory DIR, resumes unless
//                                 the VM was paused before; DIR must be absolute)
//   stats                      -> ok {"resident_pages":N, "written_pages":N, "pages":N}
//
// A failure is "error <message>". The VM keeps running after a failed snapshot.
#pragma once

#include <string>

#include "vmm/machine/machine.h"

namespace wisp {

struct ControlContext {
  // The snapshot this VM was restored from ("" when booted): what a diff is layered on.
  std::string restored_from_dir;
  std::string restored_from_id;
};

ControlHandler make_control_handler(ControlContext context);

}  // namespace wisp
