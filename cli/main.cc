// wisp: the command-line front end. Each command lives in its own file (cli/commands.h) and
// calls the manager library; the VMM itself is the sibling binary wisp-vmm.
#include "base/clock.h"
#include "base/options.h"
#include "base/version.h"
#include "cli/commands.h"

namespace {

constexpr const char* kUsage = R"(Usage: wisp COMMAND [OPTIONS]

Commands:
  run      boot a kernel in a microVM with a serial console
  exec     run a command in a fresh microVM's sandbox (stdin in, stdout/stderr out)
  snapshot create, restore or verify a snapshot of one VM
  template create, list or remove function templates (warmed snapshots)
  invoke   call a template's handler once on a fresh clone restored from its snapshot
  sandbox  create, exec in, list or kill sandboxes a running `wisp serve` keeps
  vm       ping, pause, resume or read the memory stats of a running VM
  serve    the sandbox service: templates, invoke, sandboxes over Cap'n Proto
  version  print the version

'wisp COMMAND --help' describes a command.
)";

}  // namespace

int main(int argc, char** argv) {
  uint64_t t0 = wisp::now_ns();
  using namespace wisp::cli;
  auto with_t0 = [t0](int (*command)(int, char**, uint64_t)) {
    return [t0, command](int n, char** a) { return command(n, a, t0); };
  };
  return wisp::run_subcommand("wisp", kUsage, argc, argv,
                              {{"run", with_t0(run_command)},
                               {"exec", with_t0(exec_command)},
                               {"snapshot", with_t0(snapshot_command)},
                               {"template", with_t0(template_command)},
                               {"invoke", with_t0(invoke_command)},
                               {"sandbox", with_t0(sandbox_command)},
                               {"vm", with_t0(vm_command)},
                               {"serve", with_t0(serve_command)}},
                              wisp::kWispVersion);
}
