#!/usr/bin/env bash
# guest/build-agent-initramfs.sh OUT_FILE [--agent PATH] [--add SRC:DEST]...
#
# Builds the agent guest: the default initramfs (guest/build-initramfs.sh: busybox and its
# applets for handlers: sh, cat, true, ...) with wisp-agent as /init (a later --add wins over
# the default shell /init) plus the handler runtimes:
#   /init                         wisp-agent, stripped (default: build/bin/wisp-agent)
#   /bin/wisp-shell-worker        guest/runtimes/shell_worker.c, static
#   /usr/lib/wisp/python_worker.py  for rootfs images that have python3
# Extra --add's are passed through. Needs gcc (static glibc) and binutils' strip.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
usage() { echo "usage: $0 OUT_FILE [--agent PATH] [--add SRC:DEST]..." >&2; exit 2; }
die() { echo "build-agent-initramfs: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
out=$1
shift
agent=$root/build/bin/wisp-agent
passthrough=()
while [ $# -gt 0 ]; do
  case $1 in
    --agent) [ $# -ge 2 ] || usage; agent=$2; shift 2 ;;
    --add) [ $# -ge 2 ] || usage; passthrough+=(--add "$2"); shift 2 ;;
    *) usage ;;
  esac
done

[ -x "$agent" ] || die "$agent not found: build it first (make -C build/cmake wisp-agent)"
if readelf -l "$agent" 2>/dev/null | grep -q INTERP; then
  die "$agent is dynamically linked (a sanitizer build?): the guest has no libraries"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/wisp-agent-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
strip -o "$work/wisp-agent" "$agent"
gcc -static -O2 -Wall -Wextra -Werror -std=gnu11 -o "$work/wisp-shell-worker" \
  "$here/runtimes/shell_worker.c"
strip "$work/wisp-shell-worker"

"$here/build-initramfs.sh" "$out" \
  --add "$work/wisp-agent:/init" \
  --add "$work/wisp-shell-worker:/bin/wisp-shell-worker" \
  --add "$here/runtimes/python_worker.py:/usr/lib/wisp/python_worker.py" \
  "${passthrough[@]}"
