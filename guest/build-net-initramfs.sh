#!/usr/bin/env bash
# guest/build-net-initramfs.sh OUT_FILE TOOLS_DIR
#
# The network benchmark's guest (perf/net_bench.py): the default initramfs (wisp_action=cmd
# runs the benchmark's command) plus Debian's iperf3 with the shared libraries it loads, and
# TOOLS_DIR/net_rr (guest/tools/build.sh) for round trips. wisp and QEMU boot this same image.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 2 ] || { echo "usage: $0 OUT_FILE TOOLS_DIR" >&2; exit 2; }
out=$1 tools=$2
die() { echo "build-net-initramfs: $*" >&2; exit 1; }
iperf3=$(command -v iperf3) || die "iperf3 not found (scripts/setup.sh)"
[ -x "$tools/net_rr" ] || die "$tools/net_rr missing (guest/tools/build.sh)"
adds=(--add "$iperf3:/bin/iperf3" --add "$tools/net_rr:/bin/net_rr")
# Each library at the path the dynamic loader asks for, with the content of the file its
# symlink chain ends at (build-initramfs.sh copies symlinks as symlinks).
while read -r lib; do
  adds+=(--add "$(readlink -f "$lib"):$lib")
done < <(ldd "$iperf3" | grep -o '/[^ ]*' | sort -u)
exec "$here/build-initramfs.sh" "$out" "${adds[@]}"
