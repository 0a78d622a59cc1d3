// What both wisp-vmm commands (`run`, `restore`) share: the KVM check before anything else,
// the --console and --verbose options, the start time their timings count from, and the exit
// status of a VM that has stopped.
#pragma once

#include <cstdint>
#include <string>

#include "base/options.h"
#include "vmm/machine/machine.h"

namespace wisp {

// The CLOCK_MONOTONIC time this VM's process started: $WISP_START_NS when `wisp` set it just
// before exec'ing wisp-vmm (so `wisp run --timings` still counts from the command's start),
// else now.
uint64_t process_start_ns();

// Threads started from now on get 1 MiB stacks (pthread_setattr_default_np; glibc's default
// is 8 MiB). An 8 MiB stack mapped next to a 2 MiB-aligned guest memory mapping (a huge-page
// memory file is mapped aligned) is itself aligned, and on a host whose THP setting is
// `always` its top 2 MiB became a transparent huge page at the thread's creation: 2 MiB of
// private memory per VMM for a stack that uses a few KiB. A stack under 2 MiB holds no
// aligned 2 MiB block. main() calls it first.
void small_thread_stacks();

// Declares --console MODE (stdio, none or a file path), --console-max-bytes SIZE (a console
// file's cap) and -v/--verbose (counted) on `parser`.
void add_console_options(OptionParser& parser, MachineConfig* cfg);
void add_verbose_option(OptionParser& parser, int* verbose);
// Sets the log level for `verbose` -v's: warnings, then info, then debug.
void apply_verbosity(int verbose);

// /dev/kvm, or $WISP_DEV_KVM (tests point it elsewhere).
std::string dev_kvm_path();
// 0 when dev_kvm_path() can boot Linux guests, else kExitNoKvm after explaining on stderr.
int check_kvm_usable();

// The exit status for how a VM ended (kExitOk, kExitGuestPanic, kExitError, 128+signal), with a
// message on stderr for failures.
int exit_code_for(const RunResult& r);

}  // namespace wisp
