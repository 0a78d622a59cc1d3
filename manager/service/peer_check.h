// Who may use serve's socket: its own uid or root (SO_PEERCRED), like the VMM's control socket
// (vmm/control/control_server.cc). The socket file is also 0600; this holds even when it was
// reached another way (a passed descriptor, a permissive directory ACL).
#pragma once

#include <sys/types.h>

#include <string>

namespace wisp::service {

// True when the peer of the connected Unix socket `fd` runs as `owner` or root; otherwise
// false with `why` saying who it was (or why its credentials could not be read).
bool peer_allowed(int fd, uid_t owner, std::string* why);

}  // namespace wisp::service
