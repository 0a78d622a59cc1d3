#!/usr/bin/env bash
# Builds the guest-side test tools as static binaries into OUT_DIR (default build/guest/tools),
# ready for `guest/build-initramfs.sh OUT --add OUT_DIR/vsock_tool:/bin/vsock_tool` (net_rr:
# perf/net_bench.py's round trips, in net-initramfs.cpio.gz).
#   usage: guest/tools/build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../build/guest/tools}
mkdir -p "$out"
gcc -static -O2 -Wall -Wextra -Werror -std=gnu11 -o "$out/vsock_tool" "$here/vsock_tool.c"
gcc -static -O2 -Wall -Wextra -Werror -std=gnu11 -o "$out/net_rr" "$here/net_rr.c"
echo "built $out/vsock_tool $out/net_rr"
