#!/usr/bin/env bash
# Everything of `make test` that needs a KVM that boots Linux guests, in one go (so the testbed
# boots once): the integration tests, then the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/../.."
ctest --test-dir build/cmake -L integration --output-on-failure
perf/run-all.sh
