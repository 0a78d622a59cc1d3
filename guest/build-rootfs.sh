#!/usr/bin/env bash
# guest/build-rootfs.sh OUT_IMAGE [--agent PATH] [--variant python|ml]
# guest/build-rootfs.sh --tree-only [--variant python|ml]
#
# Builds the Python function guest's root filesystem: Debian bookworm (debootstrap
# --variant=minbase with python3) plus wisp's guest pieces, as an ext4 image that
# `wisp run --rootfs OUT_IMAGE` / `wisp exec --rootfs OUT_IMAGE` boot read-only:
#   /usr/sbin/wisp-agent            build/bin/wisp-agent (static, stripped): the init= of the VM
#   /usr/bin/wisp-shell-worker      guest/runtimes/shell_worker.c, static (/bin -> usr/bin)
#   /usr/lib/wisp/python_worker.py  guest/runtimes/python_worker.py
# and Debian's criu (the agent's checkpoint and restore of a warm worker, issue 17).
#
# --variant ml (issue 15, the serverless-ML workload; `make ml-rootfs`) adds Debian's
# python3-numpy and python3-sklearn (with scipy, joblib, OpenBLAS) and
#   /usr/lib/wisp/ml_worker.py      guest/runtimes/ml_worker.py
# and also drops the packages' own test suites. Its tree is a cache entry of its own (the
# package list is part of the key); the default variant's key is unchanged by this option.
#
# Two steps:
#  1. The Debian tree (minutes, needs the network to deb.debian.org) is cached outside the
#     checkout, in ${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}/rootfs/<key>/tree,
#     key = sha256 over the recipe below (suite, variant, packages, mirror, RECIPE_VERSION).
#     It is built in rootfs/.tmp-<key>-<pid> and renamed into place when complete.
#  2. Per build (seconds): copy the tree to a staging dir, add the pieces above, and
#     `mkfs.ext4 -d STAGE` (no journal, fixed UUID and hash seed, fake creation time) into
#     OUT_IMAGE.tmp.<pid>, renamed to OUT_IMAGE. The image's UUID is derived from a key over the
#     tree's key, the agent binary and the runtimes, so an unchanged image is not rebuilt.
#
# --tree-only does step 1 alone (it needs no agent): the Makefile starts it in the background
# first thing, so that the download overlaps the compiler and the kernel build.
#
# Needs root (debootstrap, and ownership kept through the staging copy), debootstrap and
# e2fsprogs (scripts/setup.sh), gcc (static glibc) and binutils' strip.
# Environment: WISP_CACHE_DIR, WISP_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
umask 022

# Bump when the tree's recipe (trimming, configuration) changes: it is part of the cache key.
readonly RECIPE_VERSION=1
readonly SUITE=bookworm
readonly VARIANT=minbase
# criu: checkpoints a warm worker inside the guest and restores it in a fresh one (issue 17;
# the agent runs it as PID 1, with the capabilities it needs).
PACKAGES=python3-minimal,python3,criu
readonly MIRROR=${WISP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Where the pieces go in the image; vmm/main/rootfs_boot.h must agree on the agent's path.
readonly AGENT_DEST=usr/sbin/wisp-agent
readonly SHELL_WORKER_DEST=usr/bin/wisp-shell-worker
readonly PYTHON_WORKER_DEST=usr/lib/wisp/python_worker.py
readonly ML_WORKER_DEST=usr/lib/wisp/ml_worker.py

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
t0=$(date +%s.%N)

log() { printf '[build-rootfs %6.1fs] %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*" >&2; }
die() { printf 'build-rootfs: error: %s\n' "$*" >&2; exit 1; }
usage() {
  echo "usage: $0 OUT_IMAGE [--agent PATH] [--variant python|ml]" >&2
  echo "       $0 --tree-only [--variant python|ml]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
tree_only=0
[ "$1" = --tree-only ] && tree_only=1
out=$1
shift
agent=$root/build/bin/wisp-agent
rootfs_variant=python
while [ $# -gt 0 ]; do
  case $1 in
    --agent) [ $# -ge 2 ] || usage; agent=$2; shift 2 ;;
    --variant) [ $# -ge 2 ] || usage; rootfs_variant=$2; shift 2 ;;
    *) usage ;;
  esac
done
case $rootfs_variant in
  python) label=wisp-python ;;
  ml)
    PACKAGES=$PACKAGES,python3-numpy,python3-sklearn
    # Installed as dependencies, used only to build software (trim_tree removes their files).
    ML_BUILD_ONLY_PACKAGES="binutils binutils-x86-64-linux-gnu libbinutils libctf0 libctf-nobfd0
      libgprofng0 cpp cpp-12 gcc gcc-12 g++ g++-12 libgcc-12-dev libstdc++-12-dev libc6-dev
      libc-dev-bin linux-libc-dev libcrypt-dev libnsl-dev libtirpc-dev rpcsvc-proto libasan8
      libtsan2 liblsan0 libubsan1 libitm1 libcc1-0 libisl23 libmpc3 libmpfr6 libboost1.74-dev
      libxsimd-dev libopenblas-dev libopenblas-pthread-dev libpython3.11-dev libpython3-dev
      libpython3-all-dev python3.11-dev python3-dev python3-all-dev libexpat1-dev zlib1g-dev
      python3-pythran python3-beniget python3-gast python3-ply libjs-jquery libjs-sphinxdoc
      libjs-underscore"
    label=wisp-ml
    ;;
  *) die "--variant: unknown variant '$rootfs_variant' (python or ml)" ;;
esac
readonly PACKAGES

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap; file ownership in the image)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/setup.sh)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is not installed (e2fsprogs; scripts/setup.sh)"
if [ $tree_only -eq 0 ]; then
  [ -x "$agent" ] || die "$agent not found: build it first (make -C build/cmake wisp-agent)"
  if readelf -l "$agent" 2>/dev/null | grep -q INTERP; then
    die "$agent is dynamically linked (a sanitizer build?): use the static release build"
  fi
fi

# ---- 1. the Debian tree, cached ---------------------------------------------------------

# The ml variant's extra trimming is in its key; the python variant's key is as it always was.
tree_key=$( {
  printf 'recipe %s\nsuite %s\nvariant %s\npackages %s\nmirror %s\n' \
    "$RECIPE_VERSION" "$SUITE" "$VARIANT" "$PACKAGES" "$MIRROR"
  [ "$rootfs_variant" = python ] ||
    printf 'rootfs-variant %s trim 3 %s\n' "$rootfs_variant" "$(echo $ML_BUILD_ONLY_PACKAGES)"
} | sha256sum | cut -c1-64)
cache=${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}
rcache=$cache/rootfs
entry=$rcache/$tree_key

# Removes what a read-only function guest never uses: documentation, locales, apt's
# package lists and caches, logs.
trim_tree() {
  local t=$1
  rm -rf "$t"/usr/share/doc/* "$t"/usr/share/man/* "$t"/usr/share/info/* \
    "$t"/usr/share/locale/* "$t"/usr/share/lintian "$t"/usr/share/linda \
    "$t"/var/cache/apt/archives/*.deb "$t"/var/cache/apt/*.bin "$t"/var/lib/apt/lists/* \
    "$t"/var/cache/debconf/*-old "$t"/var/lib/dpkg/*-old "$t"/var/log/* "$t"/debootstrap
  if [ "$rootfs_variant" != python ]; then
    # numpy, scipy and scikit-learn ship their test suites (tens of MiB) inside the packages;
    # no import of the library needs them. The bytecode Debian compiled at install is kept:
    # without it every cold start would compile those modules again.
    find "$t"/usr/lib/python3/dist-packages -depth -type d -name tests -exec rm -rf {} +
    # python3-scipy depends on python3-pythran (a compiler for building scipy), which brings
    # gcc, g++, binutils, Boost's and other headers, static libraries and the sanitizer
    # runtimes: about 450 MiB that a function never runs. Their files go (dpkg's records of
    # them stay: nothing installs packages into a read-only function image).
    # Files and symlinks only: a list also names directories, and with merged /usr some of
    # them are symlinks (/lib64 -> usr/lib64) that every program needs.
    local pkg list f
    for pkg in $ML_BUILD_ONLY_PACKAGES; do
      for list in "$t/var/lib/dpkg/info/$pkg.list" "$t/var/lib/dpkg/info/$pkg:amd64.list"; do
        [ -f "$list" ] || continue
        while IFS= read -r f; do
          if [ ! -d "$t$f" ] && { [ -L "$t$f" ] || [ -f "$t$f" ]; }; then printf '%s\0' "$t$f"; fi
        done <"$list"
      done
    done | xargs -0 -r rm -f
    rm -rf "$t"/usr/include/*
    find "$t"/usr/lib -name '*.a' -delete
  fi
}

build_tree() {
  mkdir -p "$rcache"
  # One debootstrap at a time; a second caller waits and then finds the entry.
  exec 9>"$rcache/.lock"
  if ! flock -n 9; then
    log "another rootfs build holds $rcache/.lock; waiting"
    flock 9
  fi
  [ -d "$entry" ] && return 0
  # Under the lock, any temporary directory is left over from an interrupted build.
  rm -rf "$rcache"/.tmp-*
  tmp=$rcache/.tmp-$tree_key-$$
  trap 'umount -R "$tmp/tree/proc" "$tmp/tree/sys" 2>/dev/null; rm -rf "$tmp"' EXIT
  trap 'exit 130' INT TERM HUP
  mkdir -p "$tmp"
  log "cache miss: debootstrap --variant=$VARIANT --include=$PACKAGES $SUITE ($MIRROR)"
  local started secs
  started=$(date +%s.%N)
  if ! debootstrap --variant="$VARIANT" --include="$PACKAGES" "$SUITE" "$tmp/tree" "$MIRROR" \
    >"$tmp/debootstrap.log" 2>&1; then
    cp "$tmp/debootstrap.log" "$rcache/last-failed-debootstrap.log"
    tail -n 30 "$tmp/debootstrap.log" >&2
    die "debootstrap failed; full log: $rcache/last-failed-debootstrap.log"
  fi
  secs=$(echo "$(date +%s.%N) - $started" | bc)
  [ -x "$tmp/tree/usr/bin/python3" ] || die "debootstrap finished but /usr/bin/python3 is missing"
  trim_tree "$tmp/tree"
  if [ "$rootfs_variant" = ml ]; then
    # After trimming: the worker's imports must still work.
    chroot "$tmp/tree" /usr/bin/python3 -c 'import numpy, sklearn.linear_model' ||
      die "the ml tree cannot import numpy and sklearn.linear_model"
  fi
  mkdir -p "$tmp/out"
  mv "$tmp/tree" "$tmp/out/tree"
  {
    printf 'key %s\nrecipe %s\nsuite %s\nvariant %s\npackages %s\nmirror %s\n' "$tree_key" \
      "$RECIPE_VERSION" "$SUITE" "$VARIANT" "$PACKAGES" "$MIRROR"
    printf 'built %s\ndebootstrap_seconds %.0f\nkib %s\n' "$(date -u +%FT%TZ)" "$secs" \
      "$(du -sk "$tmp/out/tree" | cut -f1)"
    printf 'python %s\n' "$(chroot "$tmp/out/tree" /usr/bin/python3 -V 2>&1 || echo '?')"
    if [ "$rootfs_variant" = ml ]; then
      printf 'numpy %s\nsklearn %s\n' \
        "$(chroot "$tmp/out/tree" /usr/bin/python3 -c 'import numpy; print(numpy.__version__)')" \
        "$(chroot "$tmp/out/tree" /usr/bin/python3 -c 'import sklearn; print(sklearn.__version__)')"
    fi
  } >"$tmp/out/build-info"
  sync -f "$tmp/out/build-info"
  mv -T "$tmp/out" "$entry"
  rm -rf "$tmp"
  trap - EXIT
  log "debootstrap took $(printf '%.0f' "$secs") s; tree $(du -sh "$entry/tree" | cut -f1) -> $entry"
}

if [ -d "$entry" ]; then
  log "cached Debian tree $tree_key"
else
  build_tree
fi
[ $tree_only -eq 0 ] || exit 0

# ---- 2. the image -----------------------------------------------------------------------

runtimes=("$here/runtimes/shell_worker.c" "$here/runtimes/python_worker.py")
[ "$rootfs_variant" = python ] || runtimes+=("$here/runtimes/ml_worker.py")
image_key=$( {
  printf 'tree %s\n' "$tree_key"
  printf 'agent %s\n' "$(sha256sum <"$agent" | cut -c1-64)"
  for f in "${runtimes[@]}"; do printf '%s %s\n' "$(basename "$f")" "$(sha256sum <"$f" | cut -c1-64)"; done
  # The staging and mkfs steps of this script (everything below this line).
  sed -n '/^# ---- 2\. the image/,$p' "${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-32)
uuid="${image_key:0:8}-${image_key:8:4}-4${image_key:13:3}-8${image_key:17:3}-${image_key:20:12}"

if [ -f "$out" ] && [ "$(dumpe2fs -h "$out" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')" = "$uuid" ]; then
  log "up to date: $out ($(du -h --apparent-size "$out" | cut -f1), uuid $uuid)"
  exit 0
fi

outdir=$(dirname "$out")
mkdir -p "$outdir"
stage=$(mktemp -d "$outdir/.rootfs-stage.XXXXXX")
trap 'rm -rf "$stage" "$out.tmp.$$"' EXIT
trap 'exit 130' INT TERM HUP
tree=$stage/tree
cp -a --reflink=auto "$entry/tree" "$tree"

install -D -m 0755 "$agent" "$tree/$AGENT_DEST"
strip "$tree/$AGENT_DEST"
mkdir -p "$(dirname "$tree/$SHELL_WORKER_DEST")"
gcc -static -O2 -Wall -Wextra -Werror -std=gnu11 -o "$tree/$SHELL_WORKER_DEST" \
  "$here/runtimes/shell_worker.c"
strip "$tree/$SHELL_WORKER_DEST"
install -D -m 0644 "$here/runtimes/python_worker.py" "$tree/$PYTHON_WORKER_DEST"
added=("$AGENT_DEST" "$SHELL_WORKER_DEST" "$PYTHON_WORKER_DEST")
if [ "$rootfs_variant" = ml ]; then
  install -D -m 0644 "$here/runtimes/ml_worker.py" "$tree/$ML_WORKER_DEST"
  added+=("$ML_WORKER_DEST")
fi
# Fixed times on what this step adds (the tree's own are fixed by the cache entry).
for f in "${added[@]}" "$(dirname "$PYTHON_WORKER_DEST")"; do
  touch -h -d @0 "$tree/$f"
done

# Size: the tree plus 10% and 16 MiB for ext4's metadata; the guest never writes to it (its
# writes go to a tmpfs overlay), so no free space is needed beyond that.
kib=$(du -sk "$tree" | cut -f1)
inodes=$(find "$tree" | wc -l)
size_mib=$(((kib * 11 / 10 + 16384 + 1023) / 1024))
rm -f "$out.tmp.$$"
truncate -s "${size_mib}M" "$out.tmp.$$"
E2FSPROGS_FAKE_TIME=0 mkfs.ext4 -q -F -t ext4 -O ^has_journal -b 4096 -I 256 -m 0 \
  -N $((inodes + inodes / 10 + 1024)) -L "$label" -U "$uuid" -E "hash_seed=$uuid" \
  -d "$tree" "$out.tmp.$$" ||
  die "mkfs.ext4 failed"
mv -f "$out.tmp.$$" "$out"
log "built $out: ${size_mib} MiB image, tree $((kib / 1024)) MiB, $inodes files, uuid $uuid"
