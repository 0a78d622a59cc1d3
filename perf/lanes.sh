#!/usr/bin/env bash
# `make perf`: every benchmark of perf/run-all.sh, each in a testbed of its own, in two lanes
# where the testbed emulates the CPU on a host of two cores or more (tests/testbed/lanes.sh;
# WISP_PERF_LANES overrides), then build/perf/report.md on the host, also when a benchmark
# failed (the report shows what ran; the exit status is still 1).
#
# Why lanes: a testbed is one emulator thread; two lanes on two cores take about half the time.
# Each benchmark's sides alternate run by run within it (issue 15 item 3), so whatever the other
# lane costs falls on both sides of its ratios alike.
#
# Usage: perf/lanes.sh          the full run (the sizes of PERF_FULL in the Makefile)
#        QUICK=1 perf/lanes.sh  fewer runs, only the plotted benchmarks (perf/run-all.sh)
#        SOAK=1 perf/lanes.sh   only issue 12's soak and load test at full size (make soak)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
quick=0
if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then quick=1; fi
steps=()
logs=build/perf-logs
if [ "${SOAK:-0}" != 0 ]; then
  logs=build/soak-logs
  # Beyond the default limit: the soak's 10 000 invokes took 69 minutes in its testbed (2.4 a
  # second), the load test's 3000 calls of an exec handler 41, the two side by side.
  export WISP_TESTBED_TIMEOUT=${WISP_TESTBED_TIMEOUT:-7200}
  steps+=("perf/run-all.sh soak")
  # serve's load test at issue 12's full size (make test runs 24 calls): 2000 invokes at
  # concurrency 8 over Cap'n Proto, 1000 over HTTP, every answer checked, RSS and fds flat.
  steps+=("env WISP_SERVE_TEST_N=2000 python3 tests/integration/serve_test.py ServeTest.test_load ServeTest.test_load_over_http")
elif ((quick)); then
  # QUICK is not a WISP_ variable, so the testbed would not pass it on: each step sets it.
  for b in ml serve serve-python snapshot density memsize net boot; do
    steps+=("env QUICK=1 perf/run-all.sh $b")
  done
else
  # Longest first (as measured in the testbed: 830 s for serve-python down to 50 s for shim;
  # about 4500 s in all, 38 minutes in two lanes). The soak here is WISP_BENCH_SOAK invokes
  # (PERF_FULL: 1000); its 10 000 and the full-size load test are `make soak`.
  for b in serve-python serve soak snapshot criu ml net boot jail hugepages density agent blk \
    vsock memsize shim; do
    steps+=("perf/run-all.sh $b")
  done
fi
mkdir -p build/perf
rc=0
printf '%s\n' "${steps[@]}" | tests/testbed/lanes.sh "${WISP_PERF_LANES:-auto}" "$logs" || rc=1
perf/run-all.sh report || rc=1
exit $rc
