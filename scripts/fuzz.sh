#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cc) with clang++, ASan and UBSan in build/fuzz,
# then runs each for SECONDS (default 60), keeping its corpus in build/fuzz/corpus/<target> so
# later runs start where earlier ones stopped. Fails on the first crash or sanitizer report;
# the reproducer is left in build/fuzz/artifacts/<target>/. One input running over 25 s is a
# failure too (a hang a guest could cause), reported with its reproducer.
#   usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
build=build/fuzz

command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang)" >&2; exit 1; }
launcher=()  # ccache where scripts/setup.sh installed it (see the Makefile)
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=1
fi
cmake -S . -B "$build" -DWISP_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
nice make --no-print-directory -C "$build" -j"$(nproc)" wisp_fuzz_targets >/dev/null

status=0
for src in tests/fuzz/*_fuzz.cc; do
  name=$(basename "$src" .cc)
  corpus="$build/corpus/$name"
  artifacts="$build/artifacts/$name"
  mkdir -p "$corpus" "$artifacts"
  # Seed the kernel parser with real headers (8 bytes of claimed size, then the file's head),
  # so it starts past the magic numbers.
  if [ "$name" = kernel_image_fuzz ]; then
    for k in build/guest/vmlinux build/guest/bzImage; do
      [ -f "$k" ] && { printf '\0\0\0\0\0\0\0\0'; head -c 8192 "$k"; } > "$corpus/seed-$(basename "$k")"
    done
  fi
  # Seed the standby order with valid ones (descriptor count byte, then the text).
  if [ "$name" = standby_order_fuzz ]; then
    printf '\002wisp-order/1 restore 1 - /store/t\n' > "$corpus/seed-1"
    printf '\003wisp-order/1 restore 1 - ws /store/t\n' > "$corpus/seed-3"
    printf '\007wisp-order/1 restore 2 ro,rw,ro /s d\n' > "$corpus/seed-2"
  fi
  # Seed the ttrpc stream with a Task call as containerd frames it (split byte, header, Request
  # {service, method}).
  if [ "$name" = ttrpc_frame_fuzz ]; then
    printf '\007\0\0\0\042\0\0\0\001\001\0\n\027containerd.task.v2.Task\022\007Connect' \
      > "$corpus/seed-connect"
  fi
  # Seed the OCI spec parsers with a config.json as containerd writes it.
  if [ "$name" = oci_spec_fuzz ]; then
    printf '{"process": {"args": ["/bin/sh", "-c", "echo \\u003e"], "env": ["PATH=/bin"], "cwd": "/"}, "annotations": {"io.wisp.template": "t"}}' \
      > "$corpus/seed-config"
    printf '{"args": ["/bin/echo", "x"], "env": []}' > "$corpus/seed-exec"
  fi
  # Seed the host options (first byte: 0 JSON text, 1 --allow, 2 rate keys).
  if [ "$name" = host_options_fuzz ]; then
    printf '\x00{"a\\u00e9": ["\\ud83d\\ude00", "\\u0022"]}' > "$corpus/seed-json"
    printf '\x0110.1.2.0/24:8080' > "$corpus/seed-allow"
    printf '\x02tx-bw=1M,rx-ops=100,tx-bw-burst=64K,refill-ms=100' > "$corpus/seed-rate"
  fi
  # Seed a CRIU image drive's record with one as template create writes it.
  if [ "$name" = criu_drive_record_fuzz ]; then
    printf 'wisp-criu-drive 1\nbytes 12582912\nmtime_ns 1764815000123456789\ndigest 0123456789abcdef\ncrc64 fedcba9876543210\nimage_crc64 00000000000000ff\n' \
      > "$corpus/seed-record"
  fi
  echo "fuzz: $name for ${seconds}s (corpus $corpus)"
  if nice "$build/tests/fuzz/$name" "$corpus" -max_total_time="$seconds" -timeout=25 -max_len=9000 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$build/$name.log" 2>&1; then
    runs=$(grep -m1 '^stat::number_of_executed_units' "$build/$name.log" | awk '{print $2}')
    echo "fuzz: $name ok: ${runs:-?} runs, $(ls "$corpus" | wc -l) corpus entries"
  else
    echo "fuzz: $name FAILED; log: $build/$name.log" >&2
    grep -E 'ERROR|SUMMARY|runtime error|deadly signal' "$build/$name.log" | head -20 >&2 || true
    status=1
  fi
done
exit $status
