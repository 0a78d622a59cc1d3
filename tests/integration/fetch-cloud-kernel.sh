#!/usr/bin/env bash
# Fetches Debian's stock cloud kernel (linux-image-cloud-amd64) as a bzImage for the
# integration test that boots it, or with PACKAGE another stock kernel: the VM generation id
# test needs linux-image-amd64, as the cloud kernel is built without CONFIG_VMGENID.
# apt-get download only; cached outside the checkout.
# Usage: fetch-cloud-kernel.sh OUT_DIR [PACKAGE]   -> OUT_DIR/vmlinuz, OUT_DIR/config
set -euo pipefail
out=${1:?usage: fetch-cloud-kernel.sh OUT_DIR [PACKAGE]}
meta=${2:-linux-image-cloud-amd64}
cache=${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}/cloud-kernel
mkdir -p "$out" "$cache"

# The metapackage depends on the versioned image package; resolve it without installing.
pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq >&2
  pkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
ver=$(apt-cache policy "$pkg" | awk '/Candidate:/{print $2}')
entry="$cache/$pkg-$ver"
if [ ! -f "$entry/vmlinuz" ] || [ ! -f "$entry/config" ]; then
  echo "fetch-cloud-kernel: downloading $pkg $ver" >&2
  tmp=$(mktemp -d "$cache/tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) ||
    { apt-get update -qq >&2 && (cd "$tmp" && apt-get download "$pkg" >/dev/null); }
  mkdir -p "$tmp/root"
  dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp/root" ./boot  # not the modules
  mkdir -p "$tmp/entry"
  cp "$tmp"/root/boot/vmlinuz-* "$tmp/entry/vmlinuz"
  cp "$tmp"/root/boot/config-* "$tmp/entry/config"
  rm -rf "$entry"
  mv "$tmp/entry" "$entry"
fi
cp "$entry/vmlinuz" "$out/vmlinuz"
cp "$entry/config" "$out/config"
echo "$pkg $ver" > "$out/VERSION"
