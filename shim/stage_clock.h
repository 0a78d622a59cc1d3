// Where a start through the shim spends its time (issue 16 item 5): the shim logs each stage of
// a task ("task ID: stage NAME at SECONDS") on CLOCK_MONOTONIC, which every process of the
// machine shares, so perf/shim_bench.py lines them up with the `ctr run` it timed and with
// each other (the serving mode's start, Create, the template, the sandbox, Start, the exit,
// Delete).
#pragma once

#include <time.h>

#include <cstdlib>
#include <string>

#include "base/log.h"

namespace wisp::shim {

inline double monotonic_seconds() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

inline void log_stage(const std::string& task, const char* stage) {
  LOG_INFO("task %s: stage %s at %.3f", task.c_str(), stage, monotonic_seconds());
}

// `start` puts its own start time here for the serving mode it spawns, which logs it as the
// stage "shim-start" (start itself may print nothing but the address).
constexpr const char* kStartedAtVariable = "WISP_SHIM_STARTED_AT";

inline void log_start_stage(const std::string& task) {
  const char* at = std::getenv(kStartedAtVariable);
  if (at == nullptr) return;
  char* end = nullptr;
  double t = std::strtod(at, &end);
  if (end != at && *end == '\0' && t > 0)
    LOG_INFO("task %s: stage shim-start at %.3f", task.c_str(), t);
  ::unsetenv(kStartedAtVariable);  // not for the processes it may start
}

}  // namespace wisp::shim
