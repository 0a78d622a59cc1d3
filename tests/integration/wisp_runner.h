// Runs build/bin/wisp as a child process for integration tests: feeds stdin, collects stdout
// and stderr, enforces a timeout (the child is killed and the test fails instead of hanging).
#pragma once

#include <string>
#include <vector>

namespace wisp::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 if killed by a signal or the timeout
  bool timed_out = false;
  std::string out, err;
  double seconds = 0;
};

// An interaction: once stdout contains `expect`, write `send` to stdin. Steps run in order;
// stdin is closed after the last one.
struct Step {
  std::string expect;
  std::string send;
};

ProcessResult run_process(const std::vector<std::string>& argv, const std::vector<Step>& steps,
                          double timeout_s, const std::vector<std::string>& env = {});

// Exit status, the last 4000 bytes of stdout and all of stderr: for assertion messages.
std::string describe(const ProcessResult& r);

// Paths into the build tree, from the environment CTest sets (WISP_BUILD_ROOT) or defaults.
std::string wisp_binary();
std::string guest_file(const std::string& name);  // build/guest/<name>

// `wisp run` with the given extra arguments (console on stdio).
ProcessResult run_wisp(const std::vector<std::string>& args, double timeout_s = 120,
                       const std::vector<Step>& steps = {},
                       const std::vector<std::string>& env = {});

}  // namespace wisp::testing
