#!/usr/bin/env bash
# guest/build-kernel.sh OUT_DIR
#
# Builds wisp's minimal x86_64 guest kernel from Debian's linux-source-6.1 tarball:
#   make tinyconfig + guest/kernel/wisp-microvm.config (merge_config.sh) + olddefconfig,
#   then checks that every option of the fragment really is in the final .config,
#   then `nice make -j$(nproc) bzImage` (which also links vmlinux).
# Leaves OUT_DIR/vmlinux (PVH-bootable ELF), OUT_DIR/bzImage and OUT_DIR/kernel.config.
#
# Results are cached outside the checkout, in
#   ${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}/kernel/<key>
# where key = sha256 over the linux-source-6.1 package version, the fragment and this
# script.  A cache hit only copies three files.  A build runs in a temporary directory
# next to the cache entry and is renamed into place when complete, so an interrupted
# build never leaves an entry that looks valid.
#
# Environment: WISP_CACHE_DIR, WISP_KERNEL_JOBS (default: nproc), WISP_KERNEL_NICE
# (default: 10).
set -euo pipefail

readonly PKG=linux-source-6.1
readonly SRC_TAR=/usr/src/linux-source-6.1.tar.xz

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
frag="$here/kernel/wisp-microvm.config"
t0=$(date +%s.%N)

log() { printf '[build-kernel %6.1fs] %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*" >&2; }
die() { printf 'build-kernel: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
out=$1

# Checks that each option in fragment $1 has exactly the requested value in .config $2.
# "CONFIG_X=v" must appear verbatim; "# CONFIG_X is not set" must not appear as CONFIG_X=...
check_config() {
  local frag=$1 cfg=$2 line name want got bad=()
  while IFS= read -r line; do
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
      name=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
      got=$(grep -m1 -E "^${name}=" "$cfg" | cut -d= -f2- || true)
      [[ $got == "$want" ]] || bad+=("$name=$want (final .config: ${got:-not set})")
    elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set ]]; then
      name=${BASH_REMATCH[1]}
      got=$(grep -m1 -E "^${name}=" "$cfg" | cut -d= -f2- || true)
      [[ -z $got ]] || bad+=("$name must be off (final .config: $name=$got)")
    fi
  done <"$frag"
  if ((${#bad[@]})); then
    printf 'build-kernel: option not applied (missing dependency, or a choice/select overrides it):\n' >&2
    printf '  %s\n' "${bad[@]}" >&2
    return 1
  fi
}

# Checks the produced images: vmlinux is an x86-64 ELF with the PVH entry note,
# bzImage speaks boot protocol >= 2.12 and has XLF_KERNEL_64.
check_images() {
  local dir=$1 hdr ver xlf
  readelf -h "$dir/vmlinux" | grep -q 'Class:[[:space:]]*ELF64' || die "vmlinux is not ELF64"
  readelf -h "$dir/vmlinux" | grep -q 'Machine:.*X86-64' || die "vmlinux is not x86-64"
  # XEN_ELFNOTE_PHYS32_ENTRY (type 18) in a "Xen" note: the PVH entry point.
  readelf -n "$dir/vmlinux" | grep -Eq 'PHYS32_ENTRY|Xen[[:space:]].*0x00000012' ||
    die "vmlinux has no PVH (Xen PHYS32_ENTRY) note"
  hdr=$(dd if="$dir/bzImage" bs=1 skip=$((0x202)) count=4 2>/dev/null)
  [ "$hdr" = HdrS ] || die "bzImage has no HdrS setup header"
  ver=$(od -An -tu2 -j $((0x206)) -N2 "$dir/bzImage" | tr -d ' ')
  xlf=$(od -An -tu2 -j $((0x236)) -N2 "$dir/bzImage" | tr -d ' ')
  ((ver >= 0x020c)) || die "bzImage boot protocol $(printf '%#x' "$ver") < 2.12"
  ((xlf & 1)) || die "bzImage lacks XLF_KERNEL_64"
}

# Copies the cache entry $1 to $out; each file is written under a temporary name and
# renamed, so OUT_DIR never holds a partial image.
install_from() {
  local entry=$1 f
  mkdir -p "$out"
  for f in vmlinux bzImage kernel.config; do
    cp "$entry/$f" "$out/.$f.tmp.$$"
    mv -f "$out/.$f.tmp.$$" "$out/$f"
  done
}

[ -r "$SRC_TAR" ] || die "$SRC_TAR not found: install $PKG (scripts/setup.sh)"
[ -r "$frag" ] || die "$frag not found"
pkgver=$(dpkg-query -W -f='${Version}' "$PKG" 2>/dev/null) || die "$PKG is not installed (scripts/setup.sh)"

key=$( {
  printf 'package %s %s\n' "$PKG" "$pkgver"
  printf -- '--- fragment\n'; cat "$frag"
  printf -- '--- script\n'; cat "$self"
} | sha256sum | cut -c1-64)
cache=${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}
kcache=$cache/kernel
entry=$kcache/$key

if [ -d "$entry" ]; then
  install_from "$entry"
  log "cached kernel $key (${PKG} ${pkgver}) -> $out"
  exit 0
fi

mkdir -p "$kcache"
# One kernel build at a time (two would fight over the same cores); a second caller waits
# and then finds the entry the first one made.
exec 9>"$kcache/.lock"
if ! flock -n 9; then
  log "another kernel build holds $kcache/.lock; waiting"
  flock 9
fi
if [ -d "$entry" ]; then
  install_from "$entry"
  log "cached kernel $key (built by a concurrent run) -> $out"
  exit 0
fi

# Under the lock, any temporary directory is left over from an interrupted build.
rm -rf "$kcache"/.tmp-*
tmp=$kcache/.tmp-$key-$$
make_pid=
cleanup() {
  [ -n "$make_pid" ] && kill -- "$make_pid" 2>/dev/null && wait "$make_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
mkdir -p "$tmp"

log "cache miss: building kernel $key from $PKG $pkgver (cache: $kcache)"
log "stage: extract $SRC_TAR"
tar -xf "$SRC_TAR" -C "$tmp"
src=$tmp/linux-source-6.1
[ -f "$src/Makefile" ] || die "unexpected layout of $SRC_TAR (no linux-source-6.1/Makefile)"

jobs=${WISP_KERNEL_JOBS:-$(nproc)}
# ARCH=x86_64 makes 64BIT the default; the fixed build user/host/timestamp keep the
# image reproducible.
mk=(make -C "$src" ARCH=x86_64 KBUILD_BUILD_USER=wisp KBUILD_BUILD_HOST=wisp
  "KBUILD_BUILD_TIMESTAMP=Thu Jan  1 00:00:00 UTC 1970" KBUILD_BUILD_VERSION=1)
blog=$tmp/build.log

log "stage: configure (tinyconfig + $(basename "$frag") + olddefconfig)"
{
  "${mk[@]}" tinyconfig
  (cd "$src" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m .config "$frag")
  "${mk[@]}" olddefconfig
} >"$blog" 2>&1 || { tail -n 30 "$blog" >&2; die "configuration failed (log above)"; }
check_config "$frag" "$src/.config" || die "kernel configuration is incomplete (see above)"

log "stage: make -j$jobs bzImage (nice ${WISP_KERNEL_NICE:-10}); progress every 15 s"
nice -n "${WISP_KERNEL_NICE:-10}" "${mk[@]}" -j"$jobs" bzImage >>"$blog" 2>&1 &
make_pid=$!
last=$(date +%s)
while kill -0 "$make_pid" 2>/dev/null; do
  sleep 1
  now=$(date +%s)
  if ((now - last >= 15)); then
    last=$now
    log "  make: $(grep -c '^  [A-Z]' "$blog" || true) steps, last: $(grep '^  [A-Z]' "$blog" | tail -n1 | sed 's/^ *//')"
  fi
done
if ! wait "$make_pid"; then
  make_pid=
  cp "$blog" "$kcache/last-failed-build.log"
  tail -n 40 "$blog" >&2
  die "make failed; full log: $kcache/last-failed-build.log"
fi
make_pid=

log "stage: check"
check_config "$frag" "$src/.config" || die "kernel configuration changed during the build"
mkdir "$tmp/out"
cp "$src/vmlinux" "$tmp/out/vmlinux"
cp "$src/arch/x86/boot/bzImage" "$tmp/out/bzImage"
cp "$src/.config" "$tmp/out/kernel.config"
check_images "$tmp/out"
secs=$(echo "$(date +%s.%N) - $t0" | bc)
{
  printf 'key %s\npackage %s %s\nbuilt %s\nseconds %.0f\njobs %s\n' \
    "$key" "$PKG" "$pkgver" "$(date -u +%FT%TZ)" "$secs" "$jobs"
  printf 'release %s\n' "$(cat "$src/include/config/kernel.release")"
} >"$tmp/out/build-info"

release=$(cat "$src/include/config/kernel.release")
log "stage: store in cache"
sync "$tmp/out"/* "$tmp/out"
mv -T "$tmp/out" "$entry"
sync "$kcache"
install_from "$entry"
log "stage: remove the build tree"
rm -rf "$tmp"
log "kernel $release: vmlinux $(stat -c %s "$out/vmlinux") B, bzImage $(stat -c %s "$out/bzImage") B -> $out"
log "built in $(printf '%.0f' "$(echo "$(date +%s.%N) - $t0" | bc)") s (configure + make: $(printf '%.0f' "$secs") s)"
