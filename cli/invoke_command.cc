// `wisp invoke`: one call on a fresh clone of a template (manager/invoke.h does the work).
#include <signal.h>

#include <cstdio>
#include <string>

#include "base/exit_codes.h"
#include "base/file_io.h"
#include "base/options.h"
#include "cli/commands.h"
#include "cli/handler_status.h"
#include "cli/payload.h"
#include "cli/signal_watch.h"
#include "manager/cancellation.h"
#include "manager/invoke.h"

namespace wisp::cli {
namespace {

using std::chrono::milliseconds;

constexpr const char* kCommand = "wisp invoke";
constexpr const char* kUsage =
    R"(Usage: wisp invoke NAME [--payload FILE|-] [-n] [--timeout S] [--timings]

Restore a fresh clone of template NAME (wisp template create), invoke its handler once with
the payload, print the result (the handler's stdout) on stdout and its stderr on stderr, and
destroy the clone. The clone gets fresh entropy and the current wall-clock time before the
call (agent.resumed), so no two clones share RNG state.

  --payload FILE|-  the payload: the file's contents, or - for all of stdin
  -n, --no-stdin    an empty payload; stdin is not read (for scripts that leave a pipe open)
                    Without either: stdin when it is a pipe or a file; empty at a terminal.
  --timeout S       the handler's wall-clock limit (seconds, or 500ms, 2m; default 30)
  --timings         print a JSON line to stderr: restore_ms (start until the clone's VMM is
                    rebuilt and about to run; jail_ms of it: the VMM's jail), reconnect_ms (until the agent answered and took
                    the fresh entropy and clock), invoke_ms (the call), total_ms (start to
                    result), pages_touched (guest pages the clone mapped: read or written)
Jail options of the clone's VMM (see wisp run --help):
%s
Exit status: the handler's; 124 it timed out; 125 a limit ended it; 126 the clone failed
(restore, agent unreachable); 2 usage error; 1 other errors (e.g. no such template).
)";

}  // namespace

int invoke_command(int argc, char** argv, uint64_t t0_ns) {
  manager::InvokeRequest request;
  PayloadSource payload;
  std::string name;
  try {
    OptionParser p(kCommand);
    add_payload_options(p, &payload);
    p.duration("timeout", &request.timeout, milliseconds(1), milliseconds(7 * 86400000))
        .flag("timings", &request.count_pages);
    add_jail_options(p, &request.jail);
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::printf(kUsage, kJailOptionsHelp);
      return kExitOk;
    }
    if (args.operands.size() != 1 || args.dashdash) throw UsageError("expected one template NAME");
    check_payload_options(payload);
    name = args.operands[0];
  } catch (const UsageError& e) {
    return usage_error(kCommand, e.what());
  }
  request.start_ns = t0_ns;
  signal(SIGPIPE, SIG_IGN);  // a closed stdout is an error to report, not a death
  // SIGINT/SIGTERM/SIGHUP kill the clone; the call then fails and unwinds (VMM reaped, runtime
  // directory removed) and the command exits 128+N.
  manager::Cancellation cancel;
  SignalWatch watch([&cancel](int) { cancel.cancel(); }, milliseconds(2000));
  manager::InvokeOutcome out;
  try {
    manager::read_template(name);  // a missing template fails before stdin is waited for
    request.payload = read_payload(payload, 0, watch.cancel_fd());
    out = manager::invoke(name, request, &cancel);
  } catch (const manager::VmFailed& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    std::fprintf(stderr, "wisp invoke: %s\n", e.what());
    return kExitVmFailed;
  } catch (const Error& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    std::fprintf(stderr, "wisp invoke: %s\n", e.what());
    return kExitError;
  }
  std::string failed = write_result(out.result);
  if (!failed.empty()) {
    std::fprintf(stderr, "wisp invoke: %s\n", failed.c_str());
    return kExitError;
  }
  if (request.count_pages)
    std::fprintf(stderr,
                 "{\"restore_ms\":%.3f,\"jail_ms\":%.3f,\"reconnect_ms\":%.3f,"
                 "\"connect_ms\":%.3f,\"invoke_ms\":%.3f,\"total_ms\":%.3f,"
                 "\"pages_touched\":%lld}\n",
                 out.restore_ms, out.jail_ms, out.reconnect_ms, out.connect_ms, out.invoke_ms,
                 out.total_ms, static_cast<long long>(out.pages_touched));
  return handler_exit_status(kCommand, out.result, request.timeout);
}

}  // namespace wisp::cli
