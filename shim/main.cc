// containerd-shim-wisp-v2: the containerd runtime v2 shim of the runtime io.containerd.wisp.v2
// (issue 16). containerd runs it as `... start` and `... delete`; `start` leaves the serving
// mode running. See shim/shim_commands.h.
#include <cstdio>
#include <exception>

#include "base/exit_codes.h"
#include "base/log.h"
#include "base/version.h"
#include "shim/shim_commands.h"
#include "shim/shim_options.h"

int main(int argc, char** argv) {
  using namespace wisp;
  shim::ShimOptions options;
  try {
    options = shim::parse_shim_options(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "containerd-shim-wisp-v2: %s\n", e.what());
    return kExitUsage;
  }
  if (options.version) {
    std::printf("containerd-shim-wisp-v2:\n  Version:  %s\n", kWispVersion);
    return 0;
  }
  set_log_level(options.debug ? LogLevel::kDebug : LogLevel::kInfo);
  try {
    if (options.action == "start") return shim::run_start(options);
    if (options.action == "delete") return shim::run_delete(options);
    return shim::run_serve(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "containerd-shim-wisp-v2 %s: %s\n",
                 options.action.empty() ? "serve" : options.action.c_str(), e.what());
    return kExitError;
  }
}
