// A standby VMM's boot order (api/standby_order.h): the machine `wisp-vmm run` would boot,
// from the order's kernel, initrd and drive descriptors and the standby's own launch
// arguments (its class, vsock, control socket, console).
#pragma once

#include <string>
#include <vector>

#include "api/standby_order.h"
#include "base/unique_fd.h"
#include "vmm/machine/machine.h"

namespace wisp {

// The names errors and logs give the order's files (the jail holds no path to them).
inline constexpr const char* kOrderKernelName = "(the boot order's kernel)";
inline constexpr const char* kOrderInitrdName = "(the boot order's initrd)";

// Checks `order` against the standby's class (cfg->mem_bytes and cfg->vcpus as launched: the
// most it may boot), then sets *cfg as run would for the same machine: memory, vCPUs, kernel
// and initrd descriptors (left in `fds`, which must outlive Machine::create), drives (moved
// out of `fds` to provide_drive_fd), rng, the launch's `vsock_uds` ("" for none) and the command
// line. Throws Error naming what is wrong.
void configure_boot(const standby::BootOrder& order, std::vector<UniqueFd>& fds,
                    const std::string& vsock_uds, MachineConfig* cfg);

}  // namespace wisp
