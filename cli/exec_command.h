// `wisp exec`: boot a fresh microVM with the agent guest, run one command in it as an exec
// handler (stdin is the payload, stdout the result), and tear the VM down.
#pragma once

namespace wisp {

// Exit codes of `wisp exec` besides the handler's own (documented in `wisp exec --help`).
// Chosen like timeout(1) and env(1), so scripts can tell wisp's failures from the handler's.
enum ExecExitCode : int {
  kExecTimedOut = 124,       // the handler ran past --timeout and was killed
  kExecLimitExceeded = 125,  // a limit ended it: memory, pids, output size
  kExecVmFailed = 126,       // the VM did not boot, the agent was unreachable or broke the RPC
  kExecSignalBase = 128,     // 128+N: the handler (or wisp exec itself) died of signal N
};

int exec_command(int argc, char** argv, unsigned long long t0_ns);

}  // namespace wisp
