// `wisp run` (and `wisp snapshot restore`, through exec_vmm): the VMM is its own executable,
// wisp-vmm, next to this one. wisp replaces itself with it, so the VM keeps this process's id,
// terminal, signals and exit status, exactly as when wisp ran the VMM itself.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/exit_codes.h"
#include "cli/commands.h"
#include "manager/vmm_child.h"

namespace wisp::cli {

int run_command(int argc, char** argv, uint64_t t0_ns) {
  return exec_vmm("run", argc, argv, t0_ns);
}

int exec_vmm(const char* command, int argc, char** argv, uint64_t t0_ns) {
  std::string exe = manager::vmm_executable();
  std::vector<char*> args = {exe.data(), const_cast<char*>(command)};
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  // wisp-vmm's --timings count from this process's start, not from the exec.
  std::string start = std::to_string(t0_ns);
  setenv("WISP_START_NS", start.c_str(), 1);
  ::execv(exe.c_str(), args.data());
  std::fprintf(stderr, "wisp: cannot run the VMM %s: %s (wisp-vmm belongs next to wisp)\n",
               exe.c_str(), std::strerror(errno));
  return kExitError;
}

}  // namespace wisp::cli
