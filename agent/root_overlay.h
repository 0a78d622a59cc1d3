// A writable root over a read-only one. A function guest booted from a root filesystem image
// (`wisp run --rootfs`, guest/build-rootfs.sh) mounts that image read-only: one base image is
// shared by every VM and every clone and must never change. PID 1 therefore stacks an overlayfs
// on it whose upper layer is a tmpfs, and makes that overlay the root: every write lands in guest
// RAM, so it is private to the VM, and after a snapshot restore private to each clone (guest
// memory is copy-on-write per clone). An initramfs root is writable and is left alone.
#pragma once

namespace wisp::agent {

// If "/" is mounted read-only: mounts a tmpfs on the first existing directory of /run, /tmp,
// /mnt (the scratch: upper/ and work/), an overlay of "/" + scratch on scratch/root, and
// pivot_roots into it, detaching the old root (the overlay keeps its own reference to the lower
// layer). Call first thing as PID 1, before the other mounts (they are made in the new root).
// Returns true when the root is now the overlay; false when "/" was writable or a step failed
// (logged on the console; the guest then keeps running on the read-only root).
bool mount_root_overlay();

}  // namespace wisp::agent
