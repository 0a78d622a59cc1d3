// Time stamps for timings and deadlines: one definition of each clock wisp reads, so that a
// figure taken in one module can be compared with one taken in another.
#pragma once

#include <time.h>

#include <cstdint>

namespace wisp {

// CLOCK_MONOTONIC in nanoseconds: what every duration and `--timings` figure is measured on.
inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// CLOCK_BOOTTIME in nanoseconds: time since the (guest) kernel booted, suspend included.
inline uint64_t boot_time_ns() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Milliseconds from `t0_ns` (a now_ns() value) to now.
inline double ms_since(uint64_t t0_ns) { return static_cast<double>(now_ns() - t0_ns) / 1e6; }

}  // namespace wisp
