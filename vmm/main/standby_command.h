// `wisp-vmm standby`: a VMM spawned ahead of time by the manager's pool (manager/vmm_pool.h).
// It jails itself before it knows which snapshot it will run, reports "standby" on its order
// socket and waits for one order (api/standby_order.h): restore the snapshot whose files come
// with it. Spawn, exec and jail so leave a clone's critical path.
#pragma once

#include <cstdint>

namespace wisp {

// argv[0] is "standby". `t0_ns`: the process start; the ready line counts from the order.
int standby_command(int argc, char** argv, uint64_t t0_ns);

}  // namespace wisp
