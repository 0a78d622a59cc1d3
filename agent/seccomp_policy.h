// The seccomp filter every handler process runs under: allow by default, deny what a function
// never needs. The deny list is data (kDeniedSyscalls) so it can be read and tested as a table.
#pragma once

#include <cstddef>
#include <span>

namespace wisp::agent {

struct DeniedSyscall {
  const char* name;  // libseccomp name, resolved for the native architecture
  const char* why;   // what a hostile handler could do with it
};

// Syscalls denied outright with EPERM.
std::span<const DeniedSyscall> denied_syscalls();

// Builds the filter (deny list plus argument rules: no AF_VSOCK sockets, no new user
// namespaces through clone, clone3 answered ENOSYS so libc falls back to clone) and loads it
// into the calling thread. Needs no_new_privs (or CAP_SYS_ADMIN). Returns 0 or -errno; it
// runs in a freshly cloned child, so it neither throws nor logs.
int load_handler_seccomp_filter();

}  // namespace wisp::agent
