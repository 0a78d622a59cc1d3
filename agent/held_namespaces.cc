#include "agent/held_namespaces.h"

#include <fcntl.h>

#include <string>

namespace wisp::agent {

HeldNamespaces hold_namespaces(pid_t pid) {
  auto open_ns = [pid](const char* ns) {
    std::string path = "/proc/" + std::to_string(pid) + "/ns/" + ns;
    return kj::AutoCloseFd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  };
  return {open_ns("net"), open_ns("ipc"), open_ns("mnt")};
}

}  // namespace wisp::agent
