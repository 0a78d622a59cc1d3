// Snapshot starts (issue 16 item 3): a container runs in a clone of a wisp template made for
// its image + command, so every start after the template's (the first one's too) is a restore
// with the process's sandbox already made, not a boot.
//
// The template: wisp's default kernel and agent initramfs, the container's root image
// (rootfs_image.h) as its one read-only drive (/dev/vda in the guest), exec mode with the
// container's args and env, no warm-up call (the command is the container's: it must not run
// before the container starts), and the handler sandbox the shim's exec calls ask for (root
// device, cwd, user, limits). Its readiness is the agent's: the snapshot is taken once the agent
// holds the sandbox pre-forked up to the execve (agent/spare_sandbox.h), so a clone's exec
// only hands it the go.
//
// Its name is derived from the image key and the command (template_name_for): the same image +
// command finds the template made before. Concurrent first starts on one host take a lock
// file in the rootfs cache, so one builds and the others then find it; serve refuses a second
// template of a name, which is taken as found (another host's shim made it).
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <string>
#include <vector>

#include "api/wisp.capnp.h"
#include "shim/oci_sandbox.h"
#include "shim/rootfs_image.h"
#include "shim/rootfs_mounts.h"

namespace wisp::shim {

// The guest device of the template's one drive (no rootfs drive before it).
constexpr const char* kContainerRootDevice = "/dev/vda";

struct ContainerStart {
  std::string image_path, image_key;
  std::vector<std::string> args, env;
  OciSandbox sandbox;
};

// "ctr-" and 40 hex digits of sha256 over the image key, args, env, cwd, user and limits.
std::string template_name_for(const ContainerStart& start);

// The handler sandbox of the container's exec calls and its template (they must be equal, or
// the clone's pre-forked sandbox is not used).
void fill_exec_sandbox(api::serve::ExecSandbox::Builder out, const OciSandbox& sandbox);

struct PreparedStart {
  std::string template_name;
  RootfsImage image;
  bool template_made = false;  // false: the template existed (a start from its snapshot)
  double image_ms = 0, template_ms = 0;
};

// The image (made if missing) and the template (made through serve at `serve_socket` if
// missing). Blocking, with a connection of its own: run it off the shim's event loop.
// Throws wisp::Error with serve's or mkfs's message.
PreparedStart prepare_start(const RootfsSource& source, const RootfsCache& cache,
                            const std::string& serve_socket, std::vector<std::string> args,
                            std::vector<std::string> env, const OciSandbox& sandbox);

// prepare_start on a thread of its own; the promise resolves on the calling thread's loop.
kj::Promise<PreparedStart> prepare_start_async(RootfsSource source, RootfsCache cache,
                                               std::string serve_socket,
                                               std::vector<std::string> args,
                                               std::vector<std::string> env, OciSandbox sandbox);

}  // namespace wisp::shim
