#!/usr/bin/env bash
# Installs every Debian package wisp needs to build, test and benchmark.
# Idempotent: when everything is present it only runs dpkg-query and returns.
set -euo pipefail

PACKAGES=(
  # C++ build
  build-essential cmake pkg-config clang clang-format lld libclang-rt-dev
  # compiler cache (~/.cache/ccache): the builds of make test (RelWithDebInfo, ASan, fuzz)
  # skip what an earlier run already compiled
  ccache
  linux-libc-dev libgtest-dev libgmock-dev libbenchmark-dev
  capnproto libcapnp-dev libseccomp-dev libcap-dev
  # a VM's own network (manager/host_net): netlink (libnl, linked statically) and nft
  libnl-3-dev libnl-route-3-dev nftables
  # guest kernel build (from Debian's linux-source-6.1)
  linux-source-6.1 bc bison flex libelf-dev libssl-dev dwarves xz-utils cpio kmod
  # guest userland; the Python guest's root filesystem (guest/build-rootfs.sh)
  busybox-static debootstrap
  # testbed (QEMU TCG with an emulated SVM CPU) and the perf suite's peer
  qemu-system-x86 python3 e2fsprogs
  # a testbed on Debian 12's 6.12 kernel (WISP_TESTBED_KERNEL): its bzImage is zstd-compressed
  zstd
  # the perf report's plots (perf/report.py)
  python3-matplotlib
  # net_test's network namespace, TAP and server (ip, nsenter)
  iproute2 util-linux
  # perf/net_bench.py's TCP stream, in its guest image (guest/build-net-initramfs.sh) and on the host
  iperf3
  # the containerd shim (shim/): protoc and the .proto files of containerd's task API and of
  # gogo-protobuf, read where Debian installs them; containerd itself for its tests
  protobuf-compiler libprotobuf-dev golang-github-containerd-containerd-dev
  golang-github-gogo-protobuf-dev containerd
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
