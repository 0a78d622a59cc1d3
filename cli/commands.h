// The commands of `wisp`, one file each (cli/*_command.cc). Each parses its arguments, calls
// the manager library (manager/) and prints; argv[0] is the command's own name, and `t0_ns`
// the CLOCK_MONOTONIC time the process started (what --timings figures count from).
#pragma once

#include <cstdint>

namespace wisp::cli {

// `wisp run` and `wisp snapshot restore`: exec wisp-vmm with the same arguments.
int run_command(int argc, char** argv, uint64_t t0_ns);
int exec_command(int argc, char** argv, uint64_t t0_ns);
int invoke_command(int argc, char** argv, uint64_t t0_ns);
int template_command(int argc, char** argv, uint64_t t0_ns);
int sandbox_command(int argc, char** argv, uint64_t t0_ns);
int snapshot_command(int argc, char** argv, uint64_t t0_ns);
int vm_command(int argc, char** argv, uint64_t t0_ns);
int serve_command(int argc, char** argv, uint64_t t0_ns);

// Replaces this process with wisp-vmm COMMAND ARGS (argv[1..]); returns only on failure.
int exec_vmm(const char* command, int argc, char** argv, uint64_t t0_ns);

}  // namespace wisp::cli
