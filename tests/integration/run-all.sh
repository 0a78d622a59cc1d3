#!/usr/bin/env bash
# Everything of `make test` that needs a KVM that boots Linux guests, in one go (so the testbed
# boots once): the integration tests, then the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/../.."
ctest --test-dir build/cmake -L integration --output-on-failure
# Each seccomp table entry is needed and none is missing (a log-only run of a workload).
python3 tests/integration/seccomp_tables_check.py
perf/run-all.sh
