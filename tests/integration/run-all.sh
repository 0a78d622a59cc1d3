#!/usr/bin/env bash
# Everything of `make test` that needs a KVM that boots Linux guests, in one go (so the testbed
# boots once): the integration tests, then the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/../.."
ctest --test-dir build/cmake -L integration --output-on-failure
# The cgroup unit tests that need a real cgroup v2 with controllers, as root: they skip on a
# cgroup v1/hybrid host such as this project's (where `make unit-test` runs), so here they run.
build/cmake/tests/wisp_unit_tests --gtest_brief=1 --gtest_filter='JailCgroupReal*'
# Each seccomp table entry is needed and none is missing (a log-only run of a workload).
python3 tests/integration/seccomp_tables_check.py
perf/run-all.sh
