#!/usr/bin/env bash
# Fetches Debian's stock cloud kernel (linux-image-cloud-amd64) as a bzImage for the
# integration test that boots it. apt-get download only; cached outside the checkout.
# Usage: fetch-cloud-kernel.sh OUT_DIR   -> OUT_DIR/vmlinuz
set -euo pipefail
out=${1:?usage: fetch-cloud-kernel.sh OUT_DIR}
cache=${WISP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wisp}/cloud-kernel
mkdir -p "$out" "$cache"

# The metapackage depends on the versioned image package; resolve it without installing.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq >&2
  pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
ver=$(apt-cache policy "$pkg" | awk '/Candidate:/{print $2}')
entry="$cache/$pkg-$ver"
if [ ! -f "$entry/vmlinuz" ]; then
  echo "fetch-cloud-kernel: downloading $pkg $ver" >&2
  tmp=$(mktemp -d "$cache/tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) ||
    { apt-get update -qq >&2 && (cd "$tmp" && apt-get download "$pkg" >/dev/null); }
  dpkg-deb -x "$tmp"/*.deb "$tmp/root"
  mkdir -p "$tmp/entry"
  cp "$tmp"/root/boot/vmlinuz-* "$tmp/entry/vmlinuz"
  rm -rf "$entry"
  mv "$tmp/entry" "$entry"
fi
cp "$entry/vmlinuz" "$out/vmlinuz"
echo "$pkg $ver" > "$out/VERSION"
