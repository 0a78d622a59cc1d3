// `wisp serve`: the sandbox service a FaaS controller holds a connection to (api/wisp.capnp
// on a Unix socket; manager/service/ does the work).
#include <cstdio>
#include <string>

#include "base/exit_codes.h"
#include "base/file_io.h"
#include "base/options.h"
#include "cli/commands.h"
#include "manager/http_gateway/http_gateway.h"
#include "manager/service/serve.h"
#include "manager/service/warm_option.h"

namespace wisp::cli {
namespace {

using std::chrono::milliseconds;

constexpr const char* kCommand = "wisp serve";
constexpr const char* kUsage =
    R"(Usage: wisp serve --socket PATH [--http HOST:PORT|unix:PATH] [--max-vms N]
                  [--max-memory MIB] [--max-per-template N] [--pool N] [--warm NAME=N]...
                  [--no-warm-touch] [--vcpu-counts] [--allow-dir DIR]...
                  [--drain-timeout S] [--huge-page-layer MIB]

Serve the templates of the store (WISP_HOME) over Cap'n Proto (api/wisp.capnp) on a Unix
socket: invoke on fresh clones, sandboxes, template creation, stats. Every VM is its own jailed
wisp-vmm process. SIGTERM or SIGINT drains: new work is refused, calls in flight finish (up to
--drain-timeout), the rest are cancelled, serve exits 0.

  --socket PATH          the API socket (created 0600; only this uid and root may connect)
  --http ADDR            also serve the HTTP/JSON gateway on HOST:PORT or unix:PATH
  --http-token-file F    the bearer token HTTP clients must send (required off loopback)
  --max-vms N            VMs running at once (clones, sandboxes, warm clones, builds)
  --max-memory MIB       guest memory committed at once (each VM counts its template's)
                         Beyond either limit a request waits up to its deadline, then
                         fails "overloaded".
  --max-per-template N   VMs of one template at once (default: unlimited)
  --pool N               pre-jailed VMMs kept waiting for a restore order
  --warm NAME=N          keep N clones of template NAME restored and paused (repeatable)
  --no-warm-touch        do not make a warm clone's pages ready before it is paused (by
                         default its VMM copies the pages a call writes and its guest reads
                         the template's working set, so its calls take few nested page faults)
  --vcpu-counts          calls report their guest's exits, nested page faults and pages
                         written in their timings (a warm clone's since it was made, a fresh
                         clone's since its restore; one more VMM call each, before the answer)
  --allow-dir DIR        host files a template spec names must lie under one of these
                         (repeatable; default: WISP_HOME and wisp's guest directory)
  --drain-timeout S      how long a drain waits for calls in flight (default 30s)
  --huge-page-layer MIB  clones' restores map each template's memory from a copy on a
                         private tmpfs of 2 MiB pages, up to MIB in all (default 1024; 0:
                         off), so KVM maps what a clone only reads 2 MiB at a time; one copy
                         shared by every clone, like the store's page cache it stands for,
                         and not counted in --max-memory
)";

}  // namespace

int serve_command(int argc, char** argv, uint64_t) {
  service::ServeOptions o;
  try {
    OptionParser p(kCommand);
    p.text("socket", &o.socket)
        .text("http", &o.http)
        .text("http-token-file", &o.http_token_file)
        .count("max-vms", &o.limits.max_vms, 1, 100000)
        .count("max-memory", &o.limits.max_memory_mib, 16, 1ull << 30)
        .count("max-per-template", &o.limits.max_per_template, 1, 100000)
        .count("pool", &o.pool, 0, 1024)
        .count("huge-page-layer", &o.huge_layer_mib, 0, 1ull << 20)
        .value("warm", [&o](const std::string& v) { service::parse_warm_option(v, &o.warm); })
        .flag("no-warm-touch", [&o] { o.warm_touch = false; })
        .flag("vcpu-counts", &o.vcpu_counts)
        .value("allow-dir", [&o](const std::string& v) { o.allow_dirs.push_back(v); })
        .duration("drain-timeout", &o.drain_timeout, milliseconds(0), milliseconds(3600000));
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (!args.operands.empty() || args.dashdash) throw UsageError("unexpected arguments");
    if (o.socket.empty()) throw UsageError("--socket PATH is required");
    if (!o.http_token_file.empty() && o.http.empty())
      throw UsageError("--http-token-file needs --http");
  } catch (const UsageError& e) {
    return usage_error(kCommand, e.what());
  }
  service::ExtraListener http;
  if (!o.http.empty()) {
    std::string token;
    if (!o.http_token_file.empty()) {
      try {
        token = read_file(o.http_token_file);
      } catch (const Error& e) {
        return usage_error(kCommand, std::string("--http-token-file: ") + e.what());
      }
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
      if (token.empty()) return usage_error(kCommand, "--http-token-file: the file is empty");
    }
    http = [&o, token](kj::AsyncIoContext& io, api::serve::Wisp::Client wisp) {
      return http_gateway::serve_http(io, o.http, kj::mv(wisp), {token});
    };
  }
  try {
    service::run_serve(o, http, [&o] {
      std::fprintf(stderr, "wisp serve: listening on %s\n", o.socket.c_str());
      std::fflush(stderr);
    });
  } catch (const Error& e) {
    std::fprintf(stderr, "wisp serve: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}

}  // namespace wisp::cli
