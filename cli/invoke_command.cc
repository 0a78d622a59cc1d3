// `wisp invoke`: one call on a fresh clone of a template (manager/invoke.h does the work).
#include <signal.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/clock.h"
#include "base/exit_codes.h"
#include "base/file_io.h"
#include "base/options.h"
#include "cli/background_rebuild.h"
#include "cli/commands.h"
#include "cli/handler_status.h"
#include "cli/payload.h"
#include "cli/serve_client.h"
#include "cli/signal_watch.h"
#include "manager/cancellation.h"
#include "manager/invoke.h"
#include "manager/template_rebuild.h"

namespace wisp::cli {
namespace {

using std::chrono::milliseconds;

constexpr const char* kCommand = "wisp invoke";
constexpr const char* kUsage =
    R"(Usage: wisp invoke NAME [--payload FILE|-] [-n] [--timeout S] [--timings] [--server PATH]

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
                    result), pages_touched (guest pages the clone mapped: read or written),
                    handler_ms (the agent's time for the handler), preforked (exec mode: it
                    ran in the sandbox the template's snapshot held ready), exits and
                    nested_page_faults (KVM's counters of the clone's vCPUs, restore to
                    result: every exit, and the EPT/NPT faults of first touches; -1 where
                    KVM keeps no statistics)
                    A worker template whose VM snapshot does not fit this host (see below)
                    adds criu_fallback (true), criu_source ("drive": the image's read-only
                    drive; "upload": the image sent to an agent that cannot use the drive),
                    boot_ms (the cold boot; criu_drive_ms of it: the drive made again from
                    the image when it was missing or damaged), criu_restore_ms (the worker's
                    restore from its CRIU image: criu_mount_ms the drive's mount in the guest,
                    or criu_upload_ms the image's transfer and criu_unpack_ms the agent's
                    unpacking; criu_guest_ms criu restore in the guest); restore_ms is then both
  --server PATH     call a running `wisp serve` over its socket PATH instead (also: the
                    WISP_SERVER environment variable): its pool or warm clones do the restore.
                    Same output and exit status; --timings then prints serve's figures
                    (queue_ms, restore_ms, reconnect_ms, invoke_ms, total_ms as serve saw
                    them, warm, pooled) and client_ms (this command's start to result), and
                    for a call serve answered from the CRIU image the criu_ fields above
  --no-prefetch     do not load the template's recorded working set (the pages its probe
                    clone touched up to its first result) before the clone runs: each page
                    then loads on the guest's first touch (to measure what prefetch gains)
  --no-prefault     load the working set but do not map it in KVM's EPT/NPT before the clone
                    runs (KVM_PRE_FAULT_MEMORY, Linux 6.10 and later; older kernels never
                    do): each page then costs the guest an exit on its first touch
  --deadline S      with --server: how long the call may wait for capacity before serve
                    answers "overloaded" (default 30)
Jail options of the clone's VMM (see wisp run --help):
%s
A VM snapshot is tied to this host's CPU model and to wisp's state format. When a worker
template's snapshot does not fit (its CPU features differ from this host's, its state file is
from an older wisp, its memory file is missing or the wrong size) and the template has a CRIU
image of its warm worker, the call boots the template's guest cold, restores the worker from
the image (its initialisation does not run again) and proceeds; it says so on stderr. After
the answer, a detached `wisp template rebuild` re-makes the snapshot for this host (its output:
$WISP_HOME/templates/.NAME.rebuild.log), so later calls are warm again; not with
WISP_NO_SNAPSHOT_REMAKE=1 in the environment (benchmarks measure the fallback repeatedly).

Exit status: the handler's; 124 it timed out; 125 a limit ended it; 126 the clone failed
(restore, agent unreachable; with --server: serve's "vm-failed"); 2 usage error; 1 other
errors (e.g. no such template; with --server: overloaded, draining, serve unreachable).
)";

// The CRIU stages of a call answered from the template's CRIU image, as the JSON members both
// --timings lines carry (standalone and through serve). The source word is kept to letters so
// the line stays JSON whatever a server sent.
std::string criu_timing_fields(const std::string& source, double boot_ms, double drive_ms,
                               double restore_ms, double upload_ms, double unpack_ms,
                               double mount_ms, double guest_ms) {
  std::string word;
  for (char c : source)
    if (std::isalpha(static_cast<unsigned char>(c))) word += c;
  // Room for seven doubles at their widest (~320 characters each with %.3f), so a line is
  // never cut short; the word goes in outside it, however long a server's.
  char buf[4096];
  std::snprintf(buf, sizeof buf,
                "\",\"boot_ms\":%.3f,\"criu_drive_ms\":%.3f,\"criu_restore_ms\":%.3f,"
                "\"criu_upload_ms\":%.3f,\"criu_unpack_ms\":%.3f,\"criu_mount_ms\":%.3f,"
                "\"criu_guest_ms\":%.3f",
                boot_ms, drive_ms, restore_ms, upload_ms, unpack_ms, mount_ms, guest_ms);
  return "\"criu_fallback\":true,\"criu_source\":\"" + word + buf;
}

// The call made by a running `wisp serve` (--server PATH or WISP_SERVER): the same output and
// exit statuses as the standalone call below.
int invoke_through_serve(const std::string& server, const std::string& name,
                         const PayloadSource& payload, const manager::InvokeRequest& request,
                         milliseconds deadline, uint64_t t0_ns) {
  signal(SIGPIPE, SIG_IGN);
  // SIGINT/SIGTERM/SIGHUP drop the call (serve destroys the clone) and exit 128+N.
  SignalWatch watch([](int) {}, milliseconds(2000));
  ServeInvokeResult out;
  try {
    auto serve = ServeClient::connect(server, watch.cancel_fd());
    std::string input = read_payload(payload, 0, watch.cancel_fd());
    out = serve->invoke(name, input, static_cast<uint64_t>(request.timeout.count()),
                        static_cast<uint64_t>(deadline.count()));
  } catch (const ServeError& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    return serve_error_status(kCommand, e);
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
  if (!out.error.empty()) {
    std::fprintf(stderr, "wisp invoke: %s\n", out.error.c_str());
    return kExitError;
  }
  if (request.count_pages) {
    const ServeTimings& t = out.timings;
    std::string criu;
    if (t.criu_fallback)
      criu = "," + criu_timing_fields(t.criu_source, t.boot_ms, t.criu_drive_ms, t.criu_restore_ms,
                                      t.criu_upload_ms, t.criu_unpack_ms, t.criu_mount_ms,
                                      t.criu_guest_ms);
    std::fprintf(stderr,
                 "{\"queue_ms\":%.3f,\"restore_ms\":%.3f,\"reconnect_ms\":%.3f,"
                 "\"invoke_ms\":%.3f,\"total_ms\":%.3f,\"warm\":%s,\"pooled\":%s,"
                 "\"client_ms\":%.3f%s}\n",
                 t.queue_ms, t.restore_ms, t.reconnect_ms, t.invoke_ms, t.total_ms,
                 t.warm ? "true" : "false", t.pooled ? "true" : "false", ms_since(t0_ns),
                 criu.c_str());
  }
  return handler_exit_status(kCommand, out.result, request.timeout);
}

}  // namespace

int invoke_command(int argc, char** argv, uint64_t t0_ns) {
  manager::InvokeRequest request;
  PayloadSource payload;
  std::string name, server;
  milliseconds deadline(30000);
  try {
    OptionParser p(kCommand);
    add_payload_options(p, &payload);
    p.duration("timeout", &request.timeout, milliseconds(1), milliseconds(7 * 86400000))
        .duration("deadline", &deadline, milliseconds(0), milliseconds(7 * 86400000))
        .flag("timings", &request.count_pages)
        .flag("no-prefetch", [&request] { request.prefetch = manager::Prefetch::kNone; })
        .flag("no-prefault", [&request] {
          if (request.prefetch == manager::Prefetch::kFull)
            request.prefetch = manager::Prefetch::kNoPrefault;
        });
    add_server_option(p, &server);
    add_jail_options(p, &request.jail);
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::printf(kUsage, kJailOptionsHelp);
      return kExitOk;
    }
    if (args.operands.size() != 1 || args.dashdash) throw UsageError("expected one template NAME");
    check_payload_options(payload);
    name = args.operands[0];
    server = server_socket(server);
    if (!server.empty() && request.prefetch != manager::Prefetch::kFull)
      throw UsageError(
          "--no-prefetch and --no-prefault apply to standalone clones (drop --server/WISP_SERVER)");
    if (!server.empty() && (!request.jail.jail || !request.jail.cgroup || request.jail.uid_first ||
                            request.jail.cpu_quota_percent || request.jail.memory_max))
      throw UsageError(
          "jail options apply to standalone clones; serve jails its VMMs itself "
          "(drop them, or --server/WISP_SERVER)");
  } catch (const UsageError& e) {
    return usage_error(kCommand, e.what());
  }
  if (!server.empty()) return invoke_through_serve(server, name, payload, request, deadline, t0_ns);
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
    request.log = [](const std::string& m) {
      std::fprintf(stderr, "wisp invoke: %s\n", m.c_str());
    };
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
  const char* no_remake = getenv("WISP_NO_SNAPSHOT_REMAKE");
  if (out.criu_fallback && !(no_remake && std::string(no_remake) == "1")) {
    // After the answer is out: the caller does not wait for the re-made snapshot.
    std::fflush(stdout);
    std::string why = start_background_rebuild(name, out.generation);
    if (why.empty())
      std::fprintf(stderr,
                   "wisp invoke: re-making the VM snapshot for this host in the background "
                   "(wisp template rebuild; log %s)\n",
                   manager::rebuild_log_path(name).c_str());
    else
      std::fprintf(stderr, "wisp invoke: the VM snapshot is not re-made: %s\n", why.c_str());
  }
  if (request.count_pages && out.criu_fallback) {
    std::string criu = criu_timing_fields(out.criu_source, out.boot_ms, out.criu_drive_ms,
                                          out.criu_ms, out.criu_upload_ms, out.criu_unpack_ms,
                                          out.criu_mount_ms, out.criu_guest_ms);
    std::fprintf(stderr,
                 "{%s,\"restore_ms\":%.3f,\"reconnect_ms\":0,"
                 "\"invoke_ms\":%.3f,\"total_ms\":%.3f,\"pages_touched\":%lld,"
                 "\"handler_ms\":%.3f}\n",
                 criu.c_str(), out.restore_ms, out.invoke_ms, out.total_ms,
                 static_cast<long long>(out.pages_touched),
                 static_cast<double>(out.result.duration_ns) / 1e6);
  } else if (request.count_pages) {
    // KVM's counters, or -1 where the clone's KVM has none.
    auto counter = [&out](uint64_t v) {
      return out.vcpu.available ? static_cast<long long>(v) : -1ll;
    };
    std::fprintf(stderr,
                 "{\"restore_ms\":%.3f,\"jail_ms\":%.3f,\"reconnect_ms\":%.3f,"
                 "\"connect_ms\":%.3f,\"invoke_ms\":%.3f,\"total_ms\":%.3f,"
                 "\"pages_touched\":%lld,\"handler_ms\":%.3f,\"preforked\":%s,"
                 "\"exits\":%lld,\"nested_page_faults\":%lld}\n",
                 out.restore_ms, out.jail_ms, out.reconnect_ms, out.connect_ms, out.invoke_ms,
                 out.total_ms, static_cast<long long>(out.pages_touched),
                 static_cast<double>(out.result.duration_ns) / 1e6,
                 out.result.preforked ? "true" : "false", counter(out.vcpu.exits),
                 counter(out.vcpu.nested_page_faults));
  }
  return handler_exit_status(kCommand, out.result, request.timeout);
}

}  // namespace wisp::cli
