// A test double of serve's Wisp capability (api/wisp.capnp), in process, for the HTTP gateway's
// unit tests and fuzz target. What a call does is picked by the template name, so a test
// reaches every outcome and every error word through the real gateway:
//   "echo"     exit code 3, stdout = payload, stderr = "err:" + payload, timings filled in
//   "big"      exit 0, 20 KiB of stderr (the Wisp-Stderr header carries 8 KiB of it)
//   "slow"     timed out          "oom"      limitExceeded "memory"
//   "signal"   killed by signal 9 "broken"   error "exec: no such file"
//   "busy"     overloaded: ...    "drain"    draining: ...
//   "crash"    vm-failed: ...     "remote"   "remote exception: not-found: ..." (as over RPC)
//   "gone"     a DISCONNECTED kj exception
//   others     not-found: template NAME
// Sandboxes: create returns "sb-1" (any template but "missing"); get knows only "sb-1"; its
// exec answers stdout = argv joined by ' ' + stdin; execStream runs a process that echoes
// (fake_wisp.cc's FakeProcess). The calls are recorded in FakeWispState.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "api/wisp.capnp.h"

namespace wisp::testutil {

struct FakeWispState {
  bool draining = false;
  // Wisp.invoke
  int invokes = 0;
  std::string last_template;
  std::string last_payload;
  uint64_t last_timeout_ms = 0;
  uint64_t last_deadline_ms = 0;
  // Sandboxes
  int creates = 0;
  std::string created_template;
  uint64_t created_timeout_ms = 0;
  bool created_detached = false;
  std::vector<std::string> exec_argv;
  std::string exec_stdin;
  int kills = 0;
  // Sandbox.execStream (FakeProcess in fake_wisp.cc), pause and resume
  std::vector<std::vector<std::string>> streams;  // each process's argv
  std::string stream_stdin;                       // what Process.write got
  int stdin_closes = 0;
  std::vector<int> signals;
  // ExecRequest.terminal and the initial size of each process (one per `streams` entry), and
  // each Process.resize (width, height) in order
  std::vector<bool> stream_terminals;
  std::vector<std::pair<int, int>> stream_sizes;
  std::vector<std::pair<int, int>> resizes;
  int pauses = 0, resumes = 0;
  bool paused = false;
  // Sandbox.snapshot: each name asked for; snapshot_refused: answered as a taken name
  bool snapshot_refused = false;
  std::vector<std::string> snapshots;
  // Stats: a template name that needs escaping in a label value.
  std::string odd_template = "we\"ird\\name\nx";
};

api::serve::Wisp::Client make_fake_wisp(FakeWispState& state);

}  // namespace wisp::testutil
