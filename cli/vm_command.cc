// `wisp vm ping|pause|resume|stats|resident`: one call on a running VMM's control channel
// (api/vmm.capnp), for people and scripts holding a VM started with --control-socket.
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <string>

#include "api/vmm_client.h"
#include "base/exit_codes.h"
#include "base/options.h"
#include "cli/commands.h"

namespace wisp::cli {
namespace {

constexpr const char* kCommand = "wisp vm";
constexpr const char* kUsage = R"(Usage: wisp vm COMMAND --control-socket PATH

One call on the VMM listening on PATH (wisp run/snapshot restore --control-socket):
  ping     answer once the VMM's event loop serves calls
  pause    stop every vCPU until resume (snapshots of a paused VM keep it paused);
           with --hold-clock the guest's clock (kvmclock) stands still while paused, as under
           QEMU's stop/cont: on resume its monotonic time goes on from the pause (no timers
           all due at once) and its wall clock lags by the pause (a snapshot of a VM paused
           so records the clock of the pause)
  resume   let the vCPUs run again
  stats    guest memory pages, as JSON: resident (mapped by this VMM), written since a
           restore (copied on write), and the guest's total; "vcpu": KVM's counters of the
           vCPUs since the VM started or was restored (exits, nested_page_faults: first
           touches of guest pages, pages_mapped, halt/mmio/io exits)
  resident the resident guest pages, as JSON: {"ranges":[[FIRST,COUNT],...]}, sorted runs of
           4 KiB page indexes (what a template's working set records)
Exit 0 on success, 1 with the VMM's reason, 2 on a usage error.
)";

using Call = std::function<void(client::VmmClient&)>;

// `options`: a command's own options, added to the parser before it parses.
int call_vmm(const char* name, int argc, char** argv, const Call& call,
             const std::function<void(OptionParser&)>& options = {}) {
  std::string socket;
  std::string program = std::string(kCommand) + " " + name;
  try {
    OptionParser p(program);
    p.text("control-socket", &socket);
    if (options) options(p);
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (!args.operands.empty()) throw UsageError("unexpected argument '" + args.operands[0] + "'");
    if (socket.empty()) throw UsageError("--control-socket PATH is required");
  } catch (const UsageError& e) {
    return usage_error(program, e.what());
  }
  try {
    call(*client::VmmClient::connect(socket));
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return kExitError;
  }
  return kExitOk;
}

int pause(int argc, char** argv) {
  bool hold_clock = false;
  return call_vmm(
      "pause", argc, argv,
      [&hold_clock](client::VmmClient& vmm) {
        if (hold_clock)
          vmm.pause_holding_clock();
        else
          vmm.pause_lasting();
      },
      [&hold_clock](OptionParser& p) { p.flag("hold-clock", &hold_clock); });
}

int stats(int argc, char** argv) {
  return call_vmm("stats", argc, argv, [](client::VmmClient& vmm) {
    control::MemoryStats s = vmm.stats();
    const control::VcpuCounters& v = s.vcpu;
    std::printf("{\"resident_pages\":%" PRIu64 ",\"written_pages\":%" PRIu64 ",\"pages\":%" PRIu64
                ",\"vcpu\":{\"available\":%s,\"exits\":%" PRIu64 ",\"nested_page_faults\":%" PRIu64
                ",\"pages_mapped\":%" PRIu64 ",\"halt_exits\":%" PRIu64 ",\"mmio_exits\":%" PRIu64
                ",\"io_exits\":%" PRIu64 "}}\n",
                s.resident_pages, s.written_pages, s.pages, v.available ? "true" : "false", v.exits,
                v.nested_page_faults, v.pages_mapped, v.halt_exits, v.mmio_exits, v.io_exits);
  });
}

int resident(int argc, char** argv) {
  return call_vmm("resident", argc, argv, [](client::VmmClient& vmm) {
    std::string out = "{\"ranges\":[";
    bool first = true;
    for (const auto& [page, count] : vmm.resident_ranges()) {
      out += (first ? "[" : ",[") + std::to_string(page) + "," + std::to_string(count) + "]";
      first = false;
    }
    std::printf("%s]}\n", out.c_str());
  });
}

}  // namespace

int vm_command(int argc, char** argv, uint64_t) {
  auto simple = [](const char* name, void (client::VmmClient::*method)()) {
    return [name, method](int n, char** a) {
      return call_vmm(name, n, a, [method](client::VmmClient& vmm) { (vmm.*method)(); });
    };
  };
  return run_subcommand(kCommand, kUsage, argc, argv,
                        {{"ping", simple("ping", &client::VmmClient::ping)},
                         {"pause", pause},
                         {"resume", simple("resume", &client::VmmClient::resume)},
                         {"stats", stats},
                         {"resident", resident}});
}

}  // namespace wisp::cli
