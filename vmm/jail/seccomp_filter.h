// The VMM's seccomp filters: one allow-list per thread kind, the tables in
// seccomp_<kind>_table.cc, compiled to BPF by libseccomp when wisp is built
// (seccomp_programs.h). A call outside its thread's list traps (SIGSYS): the
// handler records the syscall number in a page shared with the jail's supervisor and exits
// with kExitSeccompViolation, and the supervisor names the call (`VMM killed by seccomp: X`).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace wisp::jail {

// The kinds of thread a VMM runs, each with its own filter.
enum class ThreadKind {
  kLoop,     // the main thread: the event loop (devices' back-ends, console, stop signals)
  kVcpu,     // one per vCPU: KVM_RUN and the exits it dispatches to the buses
  kControl,  // the control socket's Cap'n Proto RPC thread
  kBlock,    // a virtio-blk device's disk I/O thread (BlockWorker)
};
inline constexpr ThreadKind kThreadKinds[] = {ThreadKind::kLoop, ThreadKind::kVcpu,
                                              ThreadKind::kControl, ThreadKind::kBlock};
const char* thread_kind_name(ThreadKind kind);  // "loop", "vcpu", "control", "block"

enum class SeccompMode {
  kTrap,    // the default: a call outside the list raises SIGSYS
  kLogAll,  // allow everything, log every call to the kernel log (audit type 1326); used to
            // check that each table entry is needed and that nothing is missing
};

// Written by the SIGSYS handler (async-signal-safe: plain stores), read by the supervisor
// after the VMM exited. Lives in a MAP_SHARED page mapped before the jail forks.
struct ViolationReport {
  std::atomic<int32_t> syscall_nr{-1};   // -1: no violation
  std::atomic<int32_t> thread_kind{-1};  // a ThreadKind, when the thread had installed one
};

// Maps a zeroed shared page holding a ViolationReport (never unmapped: one per process).
// Throws Error.
ViolationReport* map_violation_report();

// Installs the process-wide SIGSYS handler that fills `report` and exits the whole process
// with kExitSeccompViolation. Throws Error.
void install_sigsys_handler(ViolationReport* report);

// Installs `kind`'s filter on the calling thread only (no TSYNC): threads install their own,
// first thing, before they touch guest input. kTrap loads the program compiled with wisp;
// kLogAll compiles its own. Sets no_new_privs (the jail has already). Throws Error.
void install_thread_filter(ThreadKind kind, SeccompMode mode);

// How many syscalls `kind`'s table allows (for --help/notes and tests).
size_t allowed_syscall_count(ThreadKind kind);

// The name of syscall `nr` on this architecture ("openat"), or "syscall N".
std::string syscall_name(int nr);

// Test switch: when $WISP_TEST_FORBIDDEN_CALL is "KIND:CALL" (KIND one of loop, vcpu, control,
// block;
// CALL one of openat, execve, socket, ptrace) and KIND is `kind`, attempts CALL now, which the
// filter must kill. Does nothing otherwise.
void maybe_attempt_forbidden_call(ThreadKind kind);

}  // namespace wisp::jail
