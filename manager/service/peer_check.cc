#include "manager/service/peer_check.h"

#include <sys/socket.h>

#include "base/error.h"

namespace wisp::service {

bool peer_allowed(int fd, uid_t owner, std::string* why) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    *why = errno_message("SO_PEERCRED");
    return false;
  }
  if (len == sizeof(cred) && (cred.uid == 0 || cred.uid == owner)) return true;
  *why = "a connection from uid " + std::to_string(cred.uid) + " (pid " + std::to_string(cred.pid) +
         "): only uid " + std::to_string(owner) + " and root may use wisp serve";
  return false;
}

}  // namespace wisp::service
