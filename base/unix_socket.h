// Unix-domain socket addresses, for every place that binds or connects one.
#pragma once

#include <sys/un.h>

#include <string>

namespace wisp {

// Fills *addr with the AF_UNIX address of `path`. False when `path` (with its NUL) does not fit
// in sun_path; an empty path is the caller's to refuse.
bool unix_address(const std::string& path, sockaddr_un* addr);

}  // namespace wisp
