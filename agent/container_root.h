// A container's root for handler sandboxes (api/agent.capnp Handler.rootDevice): a read-only
// ext4 image on a guest block device (the containerd shim's image of the container's root
// filesystem, shared by every VM and clone and never written) under an overlayfs whose upper
// layer is a tmpfs in guest RAM. Made once per VM and device, then shared by every sandbox the
// agent makes for that root (a container's process and its execs see each other's writes);
// after a snapshot restore each clone's writes are its own (guest memory is copy-on-write per
// clone).
#pragma once

#include <string>

namespace wisp::agent {

// Whether `device` names a virtio block device ("/dev/vda".."/dev/vdzz"): the only devices a
// handler root may come from. Pure: also used to validate the wire field.
bool is_root_device_name(const std::string& device);

// The directory holding the overlay for `device` (/run/wisp-root/<vdX>/root), mounting it the
// first time. Throws kj::Exception naming the step and device when it cannot (no such device,
// not ext4, no overlay support).
std::string container_root(const std::string& device);

}  // namespace wisp::agent
