#!/usr/bin/env bash
# Every benchmark once, JSON in build/perf/: what `make perf` and `make test` run (inside KVM:
# tests/integration/in-kvm). Run counts come from WISP_BENCH_RUNS* (defaults below).
# Usage: perf/run-all.sh [BENCH...]   (boot blk vsock agent snapshot jail serve serve-python
# hugepages ml; default: all; ml needs `make ml-rootfs`; tests/integration/run-all.sh, i.e.
# `make test`, names its own list)
set -euo pipefail
cd "$(dirname "$0")/.."
run() {
  case "$1" in
    boot) perf/boot_bench.py --runs "${WISP_BENCH_RUNS:-20}" --out build/perf/boot.json ;;
    blk) perf/blk_bench.py --runs "${WISP_BENCH_RUNS_BLK:-5}" --out build/perf/blk.json ;;
    vsock) perf/vsock_bench.py --runs "${WISP_BENCH_RUNS_VSOCK:-3}" --out build/perf/vsock.json ;;
    agent)
      perf/agent_bench.py --runs "${WISP_BENCH_RUNS_AGENT:-10}" --calls 200 \
        --out build/perf/agent.json ;;
    snapshot)
      perf/snapshot_bench.py --runs "${WISP_BENCH_RUNS_SNAPSHOT:-50}" \
        --qemu-runs "${WISP_BENCH_RUNS_SNAPSHOT_QEMU:-10}" \
        --cold-runs "${WISP_BENCH_RUNS_SNAPSHOT_COLD:-3}" --out build/perf/snapshot.json ;;
    jail) perf/jail_bench.py --runs "${WISP_BENCH_RUNS_JAIL:-6}" --out build/perf/jail.json ;;
    serve)
      perf/serve_bench.py --calls "${WISP_BENCH_SERVE_CALLS:-16}" \
        --cold-calls "${WISP_BENCH_SERVE_COLD_CALLS:-4}" \
        --concurrency "${WISP_BENCH_SERVE_CONCURRENCY:-1,8,32}" --soak "${WISP_BENCH_SERVE_SOAK:-0}" \
        --paced-calls "${WISP_BENCH_SERVE_PACED_CALLS:-16}" --pace-ms 1500 \
        --out build/perf/serve.json ;;
    # serve again with the warm Python worker (make perf only: a rootfs template per mode).
    serve-python)
      perf/serve_bench.py --handler python --calls "${WISP_BENCH_SERVE_CALLS:-16}" \
        --cold-calls "${WISP_BENCH_SERVE_COLD_CALLS:-4}" \
        --concurrency "${WISP_BENCH_SERVE_CONCURRENCY:-1,8,32}" \
        --paced-calls "${WISP_BENCH_SERVE_PACED_CALLS:-16}" --pace-ms 1500 \
        --out build/perf/serve-python.json ;;
    hugepages)
      perf/hugepage_bench.py --runs "${WISP_BENCH_RUNS_HUGEPAGES:-10}" \
        --out build/perf/hugepages.json ;;
    ml) perf/ml_bench.py --runs "${WISP_BENCH_RUNS_ML:-10}" --cold-runs "${WISP_BENCH_RUNS_ML_COLD:-3}" \
      --out build/perf/ml_bench.json ;;
    *) echo "perf/run-all.sh: unknown benchmark '$1' (boot blk vsock agent snapshot jail serve" \
         "serve-python hugepages ml)" >&2
       exit 2 ;;
  esac
}
[ $# -gt 0 ] || set -- boot blk vsock agent snapshot jail serve serve-python hugepages ml
for bench in "$@"; do run "$bench"; done
