#!/usr/bin/env bash
# Runs a queue of steps in LANES lanes at once, each step in a testbed of its own
# (tests/integration/in-kvm; directly on a host with kvm_intel/kvm_amd), or on the host itself
# when the step starts with "host:" (it starts testbeds of its own). What `make test`
# (tests/integration/run-all.sh) and `make perf` (perf/lanes.sh) share.
#
# A testbed is one emulator thread for its one vCPU, so two lanes on two cores take about half
# the time of one. Each lane takes the next step off the queue (listed longest first by the
# caller); a step's output is kept in LOGDIR/laneN-I.log and printed whole when it ends, so the
# lanes' logs do not interleave. A step is a command line split at spaces, without globbing.
#
# Usage: tests/testbed/lanes.sh LANES LOGDIR < steps   (one step a line; LANES "auto": 2 where
# the testbed emulates the CPU and the host has two cores or more, else 1)
# Exit status: 0 when every step passed, else 1 (the failed steps listed last).
set -euo pipefail
cd "$(dirname "$0")/../.."
lanes=${1:?usage: lanes.sh LANES LOGDIR < steps}
logs=${2:?usage: lanes.sh LANES LOGDIR < steps}
if [ "$lanes" = auto ]; then
  lanes=1
  if ! tests/testbed/host-has-hw-kvm && [ "$(nproc)" -ge 2 ]; then lanes=2; fi
fi
[[ $lanes =~ ^[1-9]$ ]] || { echo "lanes: LANES must be 1-9, not '$lanes'" >&2; exit 2; }

rm -rf "$logs" && mkdir -p "$logs"
grep -v '^ *$' >"$logs/queue" || true
[ -s "$logs/queue" ] || { echo "lanes: no steps" >&2; exit 2; }
: >"$logs/failed"
: >"$logs/.lock"

# Takes the next step off the queue (under the lock), or fails when it is empty.
next_step() {
  local line
  exec 9<>"$logs/.lock"
  flock 9
  line=$(head -n1 "$logs/queue")
  if [ -n "$line" ]; then sed -i 1d "$logs/queue"; fi
  flock -u 9
  exec 9>&-
  [ -n "$line" ] && printf '%s' "$line"
}

lane() {
  local n=$1 step start rc log i=0
  while step=$(next_step); do
    i=$((i + 1))
    log="$logs/lane$n-$i.log"
    start=$SECONDS
    echo "lanes: lane $n: start: $step" >&2
    rc=0
    set -f
    if [[ $step == host:* ]]; then
      # shellcheck disable=SC2086
      ${step#host:} >"$log" 2>&1 || rc=$?
    else
      # shellcheck disable=SC2086
      tests/integration/in-kvm $step >"$log" 2>&1 || rc=$?
    fi
    set +f
    {
      echo "lanes: ---- lane $n: $step ----"
      cat "$log"
      echo "lanes: $((SECONDS - start)) s: $step$([ $rc -eq 0 ] || echo " FAILED (exit $rc)")"
    } >&2
    if [ $rc -ne 0 ]; then
      # shellcheck disable=SC2016  # $1 and $2 are the inner shell's
      flock "$logs/.lock" sh -c 'printf "%s\n" "$1" >>"$2"' _ "$step" "$logs/failed"
    fi
  done
}

echo "lanes: $(wc -l <"$logs/queue") steps in $lanes lane(s)" >&2
pids=()
for n in $(seq 1 "$lanes"); do
  lane "$n" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "lanes: ${SECONDS} s in all" >&2
if [ -s "$logs/failed" ]; then
  printf 'lanes: %d step(s) failed:\n' "$(wc -l <"$logs/failed")" >&2
  sed 's/^/  /' "$logs/failed" >&2
  exit 1
fi
