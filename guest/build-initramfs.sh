#!/usr/bin/env bash
# guest/build-initramfs.sh OUT_FILE [--add SRC:DEST]...
#
# Builds wisp's default guest initramfs: a gzip'd newc cpio holding busybox-static as
# /bin/busybox (plus symlinks for the applets below) and guest/initramfs/init as /init.
#   --add SRC:DEST   copy the host file or directory SRC to DEST (absolute path in the
#                    image; parents are created).  Modes are kept, owner becomes 0:0.
#                    Later --add's win over earlier ones and over the defaults.
# The output is deterministic for the same inputs: every mtime is SOURCE_DATE_EPOCH
# (default 0), owners are 0:0, the file list is sorted, inode numbers are renumbered and
# gzip stores no name or time.  No root needed.
set -euo pipefail
umask 022

readonly BUSYBOX=${WISP_BUSYBOX:-/bin/busybox}
# Applets linked in /bin: what /init uses, plus a small toolbox for the console and for
# wisp_cmd.
readonly APPLETS=(
  sh ash mount umount mkdir mknod cat echo printf nproc poweroff reboot halt setsid
  cttyhack sync sleep true false test '[' env
  ls cp mv rm ln chmod chown touch stat df du find grep sed awk head tail wc sort uniq cut tr
  xargs tee dd od hexdump sha256sum md5sum dmesg ps kill free uptime uname hostname id
  date ip ifconfig ping nc wget vi less more mountpoint realpath readlink basename dirname
  seq timeout time watch which unshare nsenter chroot switch_root pivot_root setpriv
  taskset mkfifo mktemp yes blockdev cmp
)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { echo "usage: $0 OUT_FILE [--add SRC:DEST]..." >&2; exit 2; }
die() { echo "build-initramfs: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
out=$1
shift
adds=()
while [ $# -gt 0 ]; do
  case $1 in
    --add)
      [ $# -ge 2 ] || usage
      adds+=("$2")
      shift 2
      ;;
    --add=*)
      adds+=("${1#--add=}")
      shift
      ;;
    *) usage ;;
  esac
done

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install busybox-static (scripts/setup.sh)"
if readelf -l "$BUSYBOX" 2>/dev/null | grep -q 'INTERP'; then
  die "$BUSYBOX is dynamically linked: install busybox-static"
fi
command -v cpio >/dev/null || die "cpio not found (scripts/setup.sh)"

stage=$(mktemp -d "${TMPDIR:-/tmp}/wisp-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Layout.
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run,root,mnt,etc/wisp/actions,usr}
chmod 1777 "$stage/tmp"
chmod 700 "$stage/root"
ln -s bin "$stage/sbin"
ln -s ../bin "$stage/usr/bin"
ln -s ../bin "$stage/usr/sbin"
cp "$BUSYBOX" "$stage/bin/busybox"
chmod 755 "$stage/bin/busybox"
have=$("$BUSYBOX" --list)
for a in "${APPLETS[@]}"; do
  if grep -qxF -- "$a" <<<"$have"; then
    ln -s busybox "$stage/bin/$a"
  fi
done
cp "$here/initramfs/init" "$stage/init"
chmod 755 "$stage/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' >"$stage/etc/group"
chmod 644 "$stage/etc/passwd" "$stage/etc/group"

# Extra files.
for spec in "${adds[@]}"; do
  [[ $spec == *:* ]] || die "--add $spec: expected SRC:DEST"
  src=${spec%:*}
  dest=${spec##*:}
  [[ $dest == /* ]] || die "--add $spec: DEST must be an absolute path in the image"
  [[ /$dest/ != */../* ]] || die "--add $spec: DEST must not contain .."
  [ -e "$src" ] || die "--add $spec: $src does not exist"
  mkdir -p "$stage$(dirname "$dest")"
  rm -rf "${stage:?}$dest"
  cp -a --no-preserve=ownership "$src" "$stage$dest"
done

# Archive: fixed mtimes, sorted names, owner 0:0, device-independent inode numbers.
epoch=${SOURCE_DATE_EPOCH:-0}
find "$stage" -mindepth 1 -exec touch -h -d "@$epoch" {} +
mkdir -p "$(dirname "$out")"
tmpout="$out.tmp.$$"
(
  cd "$stage"
  find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible
) | gzip -9 -n >"$tmpout"
mv -f "$tmpout" "$out"
echo "build-initramfs: $out ($(stat -c %s "$out") bytes, sha256 $(sha256sum "$out" | cut -c1-16)...)" >&2
