#!/usr/bin/env bash
# Every benchmark once, JSON in build/perf/: what `make perf` and `make test` run (inside KVM:
# tests/integration/in-kvm). Run counts come from WISP_BENCH_RUNS* (defaults below).
# Usage: perf/run-all.sh [BENCH...]   (boot blk vsock net agent snapshot jail serve soak
# serve-python hugepages density memsize ml shim criu, and report; default: every benchmark, not report; ml needs
# `make ml-rootfs`; tests/integration/run-all.sh, i.e. `make test`, names its own list)
set -euo pipefail
cd "$(dirname "$0")/.."
# QUICK=1 (make perf QUICK=1): fewer runs per benchmark and, by default, only the benchmarks
# whose JSON the report plots: every plot within ~10 minutes on the testbed. Explicit
# WISP_BENCH_* win.
if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then
  : "${WISP_BENCH_RUNS:=3}" "${WISP_BENCH_RUNS_BLK:=1}" "${WISP_BENCH_RUNS_VSOCK:=1}"
  : "${WISP_BENCH_RUNS_AGENT:=2}" "${WISP_BENCH_AGENT_CALLS:=50}"
  : "${WISP_BENCH_RUNS_SNAPSHOT:=4}" "${WISP_BENCH_RUNS_SNAPSHOT_QEMU:=2}"
  : "${WISP_BENCH_RUNS_SNAPSHOT_COLD:=1}" "${WISP_BENCH_SNAPSHOT_CLONES:=3}"
  : "${WISP_BENCH_RUNS_JAIL:=2}" "${WISP_BENCH_SERVE_CALLS:=6}" "${WISP_BENCH_SERVE_COLD_CALLS:=1}"
  : "${WISP_BENCH_SERVE_CONCURRENCY:=1,4,16}" "${WISP_BENCH_SERVE_PACED_CALLS:=3}"
  : "${WISP_BENCH_RUNS_HUGEPAGES:=2}" "${WISP_BENCH_DENSITY_STEPS:=1,5,10}"
  : "${WISP_BENCH_MEMSIZE_MIBS:=128,512,2048}" "${WISP_BENCH_RUNS_MEMSIZE:=2}"
  : "${WISP_BENCH_RUNS_ML:=3}" "${WISP_BENCH_RUNS_ML_COLD:=1}"
  : "${WISP_BENCH_RUNS_CRIU:=3}" "${WISP_BENCH_RUNS_CRIU_COLD:=1}"
  : "${WISP_BENCH_RUNS_NET:=2}" "${WISP_BENCH_NET_SECONDS:=2}" "${WISP_BENCH_NET_RR:=300}"
  : "${WISP_BENCH_NET_SLIRP:=0}"
fi
run() {
  case "$1" in
    boot) perf/boot_bench.py --runs "${WISP_BENCH_RUNS:-20}" --out build/perf/boot.json ;;
    blk) perf/blk_bench.py --runs "${WISP_BENCH_RUNS_BLK:-5}" --out build/perf/blk.json ;;
    vsock) perf/vsock_bench.py --runs "${WISP_BENCH_RUNS_VSOCK:-3}" --out build/perf/vsock.json ;;
    # issue 14: virtio-net against QEMU's user-space back-end and vhost-net (needs root: the
    # testbed's).
    net)
      perf/net_bench.py --runs "${WISP_BENCH_RUNS_NET:-4}" \
        --seconds "${WISP_BENCH_NET_SECONDS:-4}" --rr-count "${WISP_BENCH_NET_RR:-1000}" --slirp-runs "${WISP_BENCH_NET_SLIRP:-1}" \
        --out build/perf/net.json ;;
    agent)
      perf/agent_bench.py --runs "${WISP_BENCH_RUNS_AGENT:-10}" \
        --calls "${WISP_BENCH_AGENT_CALLS:-200}" \
        --out build/perf/agent.json ;;
    snapshot)
      perf/snapshot_bench.py --runs "${WISP_BENCH_RUNS_SNAPSHOT:-50}" \
        --qemu-runs "${WISP_BENCH_RUNS_SNAPSHOT_QEMU:-10}" \
        --cold-runs "${WISP_BENCH_RUNS_SNAPSHOT_COLD:-3}" \
        --clones "${WISP_BENCH_SNAPSHOT_CLONES:-20}" --out build/perf/snapshot.json ;;
    jail) perf/jail_bench.py --runs "${WISP_BENCH_RUNS_JAIL:-6}" --out build/perf/jail.json ;;
    # issue 16: container starts through containerd-shim-wisp-v2 against runc
    shim) python3 perf/shim_bench.py --runs "${WISP_BENCH_RUNS_SHIM:-5}" --out build/perf/shim.json ;;
    serve)
      perf/serve_bench.py --calls "${WISP_BENCH_SERVE_CALLS:-16}" \
        --cold-calls "${WISP_BENCH_SERVE_COLD_CALLS:-4}" \
        --concurrency "${WISP_BENCH_SERVE_CONCURRENCY:-1,2,4,8,16,32}" \
        --cold-concurrency "${WISP_BENCH_SERVE_COLD_CONCURRENCY:-1}" \
        --paced-calls "${WISP_BENCH_SERVE_PACED_CALLS:-16}" --pace-ms 1500 \
        --out build/perf/serve.json ;;
    # issue 12's soak: invokes through serve at concurrency 8, chunks through the pool and
    # through warm clones in turn, serve's RSS and fds before and after (make perf: 1000 in a
    # lane beside the rest; make soak: 10 000). The warm Python worker: what the soak tests is
    # serve's own upkeep, and an exec handler's sandbox set-up in the guest (`cat`: ~0.8 calls
    # a second here against ~3) would make 10 000 calls take over three hours in the testbed.
    soak)
      perf/serve_bench.py --handler python --modes serve-pool,serve-warm --concurrency "" \
        --soak "${WISP_BENCH_SOAK:-10000}" --out build/perf/soak.json ;;
    # serve again with the warm Python worker (make perf only: a rootfs template per mode).
    serve-python)
      perf/serve_bench.py --handler python --calls "${WISP_BENCH_SERVE_CALLS:-16}" \
        --cold-calls "${WISP_BENCH_SERVE_COLD_CALLS:-4}" \
        --concurrency "${WISP_BENCH_SERVE_CONCURRENCY:-1,2,4,8,16,32}" \
        --cold-concurrency "${WISP_BENCH_SERVE_COLD_CONCURRENCY:-1}" \
        --paced-calls "${WISP_BENCH_SERVE_PACED_CALLS:-16}" --pace-ms 1500 \
        --out build/perf/serve-python.json ;;
    hugepages)
      perf/hugepage_bench.py --runs "${WISP_BENCH_RUNS_HUGEPAGES:-10}" \
        --out build/perf/hugepages.json ;;
    # issue 15's scale curves: summed PSS against live clones (up to 100), and snapshot create
    # and restore against guest memory (128 MiB to 2 GiB).
    density)
      perf/density_bench.py --steps "${WISP_BENCH_DENSITY_STEPS:-1,10,25,50,100}" \
        --out build/perf/density.json ;;
    memsize)
      perf/memsize_bench.py --mems "${WISP_BENCH_MEMSIZE_MIBS:-128,256,512,1024,2048}" \
        --runs "${WISP_BENCH_RUNS_MEMSIZE:-5}" --out build/perf/memsize.json ;;
    # build/perf/report.md and its plots from whatever JSON is there (make perf runs it last,
    # on the host, also after a benchmark failed).
    # issue 15's serverless-ML workload: cold (boot, imports, training, the call) against warm.
    ml) perf/ml_bench.py --runs "${WISP_BENCH_RUNS_ML:-10}" --cold-runs "${WISP_BENCH_RUNS_ML_COLD:-3}" \
      --out build/perf/ml_bench.json ;;
    # issue 17: a worker whose VM snapshot does not fit the host: cold boot + its init, against
    # cold boot + CRIU restore, against the VM snapshot (Python and ML workers).
    criu)
      perf/criu_bench.py --runs "${WISP_BENCH_RUNS_CRIU:-10}" \
        --cold-runs "${WISP_BENCH_RUNS_CRIU_COLD:-3}" \
        --workloads "${WISP_BENCH_CRIU_WORKLOADS:-python,ml}" --out build/perf/criu.json ;;
    report) perf/report.py --dir build/perf ;;
    *) echo "perf/run-all.sh: unknown benchmark '$1' (boot blk vsock net agent snapshot jail serve" \
         "soak serve-python hugepages density memsize ml shim criu report)" >&2
       exit 2 ;;
  esac
}
if [ $# -eq 0 ]; then
  if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then
    # QUICK: the benchmarks the report's plots come from (its goal table says NOT RUN for the
    # goals of the others).
    set -- boot net snapshot serve serve-python density memsize ml
  else
    set -- boot blk vsock net agent snapshot jail serve soak serve-python hugepages density memsize ml shim criu
  fi
fi
for bench in "$@"; do run "$bench"; done
