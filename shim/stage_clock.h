// Where a start through the shim spends its time (issue 16 item 5): the shim logs each stage of
// a task ("task ID: stage NAME at SECONDS") on CLOCK_MONOTONIC, which every process of the
// machine shares, so perf/shim_bench.py lines them up with the `ctr run` it timed and with
// each other (the serving mode's start, Create, the template, the sandbox, Start, the exit,
// Delete).
#pragma once

#include <time.h>

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

}  // namespace wisp::shim
