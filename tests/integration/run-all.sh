#!/usr/bin/env bash
# Everything of `make test` that needs a KVM that boots Linux guests: the integration tests, the
# real-cgroup tests, the seccomp-table check, then the benchmarks. Each step runs in a testbed of
# its own (tests/integration/in-kvm; directly on a host with kvm_intel/kvm_amd), a few seconds'
# boot each: the emulated testbed has been seen to stop for good inside a nested guest's boot
# (tests/testbed/README.md), and then only that step is rerun, not the whole suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
export WISP_TESTBED_HANG_RETRIES=${WISP_TESTBED_HANG_RETRIES:-2}
# The benchmarks at the reduced size of `make test` (`make perf` runs the full sizes): enough
# runs for a median side by side, few enough that the whole of `make test` stays under 45 min.
export WISP_BENCH_RUNS=${WISP_BENCH_RUNS:-6}
export WISP_BENCH_RUNS_BLK=${WISP_BENCH_RUNS_BLK:-3}
export WISP_BENCH_RUNS_AGENT=${WISP_BENCH_RUNS_AGENT:-5}
export WISP_BENCH_AGENT_CALLS=${WISP_BENCH_AGENT_CALLS:-100}
export WISP_BENCH_RUNS_SNAPSHOT=${WISP_BENCH_RUNS_SNAPSHOT:-8}
export WISP_BENCH_RUNS_SNAPSHOT_QEMU=${WISP_BENCH_RUNS_SNAPSHOT_QEMU:-4}
# 10 clones: the density goal wants 20 and is judged by `make perf`, NOT RUN here.
export WISP_BENCH_SNAPSHOT_CLONES=${WISP_BENCH_SNAPSHOT_CLONES:-10}
export WISP_BENCH_RUNS_JAIL=${WISP_BENCH_RUNS_JAIL:-4}
export WISP_BENCH_SERVE_CONCURRENCY=${WISP_BENCH_SERVE_CONCURRENCY:-1,8}
export WISP_BENCH_SERVE_PACED_CALLS=${WISP_BENCH_SERVE_PACED_CALLS:-8}
failed=()
step() {
  echo "run-all: $*" >&2
  local start=$SECONDS
  tests/integration/in-kvm "$@" || { echo "run-all: FAILED (exit $?): $*" >&2; failed+=("$*"); }
  echo "run-all: $((SECONDS - start)) s: $*" >&2
}
ctest_step() {
  step ctest --test-dir build/cmake -L integration --output-on-failure "$@"
}
# The guest-booting gtests together (seconds each), every other integration test alone.
gtests='^(Boot|BadInput|VirtioBlk|VirtioRng)\.'
ctest_step -R "$gtests"
others=$(ctest --test-dir build/cmake -L integration -N -E "$gtests" | sed -n 's/^ *Test *#[0-9]*: //p')
[ -n "$others" ] || { echo "run-all: ctest lists no integration tests" >&2; exit 1; }
for t in $others; do
  ctest_step -R "^$t\$"
done
# The cgroup unit tests that need a real cgroup v2 with controllers, as root: they skip on a
# cgroup v1/hybrid host such as this project's (where `make unit-test` runs), so here they run.
step build/cmake/tests/wisp_unit_tests --gtest_brief=1 --gtest_filter='JailCgroupReal*'
# Each seccomp table entry is needed and none is missing (a log-only run of a workload).
step python3 tests/integration/seccomp_tables_check.py
for bench in boot blk vsock agent snapshot jail serve; do
  step perf/run-all.sh "$bench"
done
echo "run-all: ${SECONDS} s in all" >&2
if [ ${#failed[@]} -gt 0 ]; then
  printf 'run-all: %d step(s) failed:\n' "${#failed[@]}" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
