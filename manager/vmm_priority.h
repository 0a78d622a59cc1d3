// CPU priority of a VMM that works ahead of demand: a warm clone spawned, jailed and restored
// for `wisp serve --warm` (not the pool's standbys, which calls take: at SCHED_IDLE too few
// finished their jail in time under load, and calls that found none paid a spawn; measured in
// perf/serve_bench.py). Such work should
// use only the CPU that calls leave idle: on a host with few cores (the testbed has one) a refill
// running at full priority beside a call adds its whole cost to that call's latency. SCHED_IDLE
// does that and is inherited by the threads and processes the VMM starts later (vCPU threads, the
// jail's child); when a call takes the VMM, it goes back to SCHED_OTHER.
//
// A VMM is the jail's supervisor (VmmChild::pid()) and the child it forks into the VM's
// namespaces: both processes' threads are set. Needs CAP_SYS_NICE for a VMM under another uid
// (the jail's): serve has it; without it the call reports false and nothing else changes.
//
// Threads: any.
#pragma once

#include <sys/types.h>

namespace wisp::manager {

// Sets every thread of `supervisor` and of its children to SCHED_IDLE (`background`) or
// SCHED_OTHER. False when some thread could not be set (gone meanwhile, or not permitted).
bool set_vmm_background(pid_t supervisor, bool background);

// Stops (SIGSTOP) or continues (SIGCONT) the VMM `supervisor` and its children. For a warm
// clone being made while calls run: even at SCHED_IDLE its work costs them on a host of few
// CPUs (the kernel's work on its behalf, the caches and TLB entries it evicts in the gaps of a
// call: measured on the testbed), so it waits until no call runs. False when some process
// could not be signalled.
bool set_vmm_stopped(pid_t supervisor, bool stopped);

}  // namespace wisp::manager
