// `wisp sandbox create|exec|snapshot|ls|kill`: sandboxes kept by a running `wisp serve` between
// calls, reached by id (api/wisp.capnp Sandboxes; cli/serve_client.h does the talking).
#include <signal.h>
#include <time.h>

#include <cstdio>
#include <string>
#include <vector>

#include "base/exit_codes.h"
#include "base/options.h"
#include "cli/commands.h"
#include "cli/common_options.h"
#include "cli/handler_status.h"
#include "cli/serve_client.h"
#include "cli/signal_watch.h"

namespace wisp::cli {
namespace {

using std::chrono::milliseconds;

constexpr const char* kCommand = "wisp sandbox";
constexpr const char* kUsage = R"(Usage: wisp sandbox COMMAND ... --server PATH

Sandboxes: clones of a template that a running `wisp serve` keeps between calls, until their
time to live runs out or they are killed. Every command needs serve's socket: --server PATH
or the WISP_SERVER environment variable.

  create TEMPLATE [--timeout S] [--deadline S]
      Start a sandbox from template TEMPLATE and print its id. It lives --timeout (default
      5m) after this command exits. --deadline: how long to wait for capacity (default 30).
  exec ID [--timeout S] [--env KEY=VALUE]... -- CMD [ARGS...]
      Run CMD in sandbox ID: this command's stdin is its stdin, its stdout and stderr come
      back as it writes them, and the exit status is CMD's (124 it timed out; 125 a limit
      ended it; 128+N a signal). --timeout: CMD's wall-clock limit (default 30).
  snapshot ID NAME
      Fork sandbox ID into a new template NAME: a diff snapshot of it as it is now (files
      written, a worker's state), which clones start from; the sandbox runs on. The new
      template holds its own links to its parent template's files: removing the parent
      leaves it working.
  ls
      List the sandboxes: id, template, state, memory, calls, seconds left.
  kill ID
      Destroy sandbox ID.

Exit status: 0 done (exec: CMD's status); 2 usage error (no --server included); 126 the
sandbox's VM failed; 1 other errors (no such sandbox or template, overloaded, serve
unreachable).
)";

// --server/WISP_SERVER, or a usage error that says how to give it.
std::string require_server(const std::string& option) {
  std::string server = server_socket(option);
  if (server.empty())
    throw UsageError(
        "sandboxes live in a running `wisp serve`: give its socket with --server PATH or the "
        "WISP_SERVER environment variable");
  return server;
}

// Runs `body` with a connection, mapping failures to exit statuses.
template <typename Body>
int with_serve(const std::string& command, const std::string& server, Body body) {
  signal(SIGPIPE, SIG_IGN);
  SignalWatch watch([](int) {}, milliseconds(2000));
  try {
    auto serve = ServeClient::connect(server, watch.cancel_fd());
    return body(*serve);
  } catch (const ServeError& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    return serve_error_status(command.c_str(), e);
  } catch (const Error& e) {
    if (watch.signal()) return kExitSignalBase + watch.signal();
    std::fprintf(stderr, "%s: %s\n", command.c_str(), e.what());
    return kExitError;
  }
}

int create(int argc, char** argv) {
  const std::string command = "wisp sandbox create";
  std::string server, name;
  milliseconds timeout(300000), deadline(30000);
  try {
    OptionParser p(command);
    p.duration("timeout", &timeout, milliseconds(1000), milliseconds(7 * 86400000))
        .duration("deadline", &deadline, milliseconds(0), milliseconds(7 * 86400000));
    add_server_option(p, &server);
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::printf("%s", kUsage);
      return kExitOk;
    }
    if (args.operands.size() != 1 || args.dashdash) throw UsageError("expected one TEMPLATE");
    name = args.operands[0];
    server = require_server(server);
  } catch (const UsageError& e) {
    return usage_error(command, e.what());
  }
  return with_serve(command, server, [&](ServeClient& serve) {
    SandboxInfo info = serve.create_sandbox(name, static_cast<uint64_t>(timeout.count()),
                                            static_cast<uint64_t>(deadline.count()));
    std::printf("%s\n", info.id.c_str());
    return std::fflush(stdout) == 0 ? kExitOk : kExitError;
  });
}

int exec(int argc, char** argv) {
  const std::string command = "wisp sandbox exec";
  std::string server, id;
  ExecSpec spec;
  milliseconds timeout(30000);
  try {
    OptionParser p(command);
    p.duration("timeout", &timeout, milliseconds(1), milliseconds(7 * 86400000));
    add_env_option(p, &spec.env);
    add_server_option(p, &server);
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::printf("%s", kUsage);
      return kExitOk;
    }
    if (args.operands.size() != 1) throw UsageError("expected one sandbox ID before --");
    if (args.rest.empty()) throw UsageError("expected -- CMD [ARGS...] after the sandbox ID");
    id = args.operands[0];
    spec.argv = args.rest;
    spec.timeout_ms = static_cast<uint64_t>(timeout.count());
    server = require_server(server);
  } catch (const UsageError& e) {
    return usage_error(command, e.what());
  }
  return with_serve(command, server, [&](ServeClient& serve) {
    client::InvokeResult r = serve.exec(id, spec, 0, 1, 2);
    std::string failed = write_result(r);  // empty when it was streamed
    if (!failed.empty()) {
      std::fprintf(stderr, "%s: %s\n", command.c_str(), failed.c_str());
      return static_cast<int>(kExitError);
    }
    return handler_exit_status(command.c_str(), r, timeout);
  });
}

// A command whose only option is --server: `n` operands (`expected` says which, for the
// usage error), then `body(serve, operands)` with a connection.
template <typename Body>
int server_command(const std::string& command, int argc, char** argv, size_t n,
                   const char* expected, Body body) {
  std::string server;
  std::vector<std::string> operands;
  try {
    OptionParser p(command);
    add_server_option(p, &server);
    OptionParser::Result args = p.parse(argc, argv);
    if (args.help) {
      std::printf("%s", kUsage);
      return kExitOk;
    }
    if (args.operands.size() != n || args.dashdash) throw UsageError(expected);
    operands = args.operands;
    server = require_server(server);
  } catch (const UsageError& e) {
    return usage_error(command, e.what());
  }
  return with_serve(command, server, [&](ServeClient& serve) { return body(serve, operands); });
}

int list(int argc, char** argv) {
  return server_command(
      "wisp sandbox ls", argc, argv, 0, "expected no operands",
      [](ServeClient& serve, const std::vector<std::string>&) {
        std::vector<SandboxInfo> all = serve.list_sandboxes();
        timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_ms = now.tv_sec * 1000 + now.tv_nsec / 1000000;
        std::printf("%-36s %-24s %-8s %8s %6s %8s\n", "ID", "TEMPLATE", "STATE", "MEM", "CALLS",
                    "LEFT");
        for (const auto& s : all)
          std::printf("%-36s %-24s %-8s %4llu MiB %6llu %7llds\n", s.id.c_str(),
                      s.template_name.c_str(), s.state.c_str(),
                      static_cast<unsigned long long>(s.mem_mib),
                      static_cast<unsigned long long>(s.invocations),
                      static_cast<long long>(
                          s.expires_unix_ms > now_ms ? (s.expires_unix_ms - now_ms) / 1000 : 0));
        return std::fflush(stdout) == 0 ? kExitOk : kExitError;
      });
}

int snapshot(int argc, char** argv) {
  return server_command(
      "wisp sandbox snapshot", argc, argv, 2, "expected a sandbox ID and a template NAME",
      [](ServeClient& serve, const std::vector<std::string>& ops) {
        manager::TemplateInfo t = serve.snapshot_sandbox(ops[0], ops[1]);
        std::printf("template %s (from %s): memory %llu bytes on disk, snapshot %.1f ms\n",
                    t.name.c_str(), t.parent.c_str(),
                    static_cast<unsigned long long>(t.memory_disk_bytes), t.snapshot_ms);
        return std::fflush(stdout) == 0 ? kExitOk : kExitError;
      });
}

int kill(int argc, char** argv) {
  return server_command("wisp sandbox kill", argc, argv, 1, "expected one sandbox ID",
                        [](ServeClient& serve, const std::vector<std::string>& ops) {
                          serve.kill_sandbox(ops[0]);
                          return static_cast<int>(kExitOk);
                        });
}

}  // namespace

int sandbox_command(int argc, char** argv, uint64_t) {
  return run_subcommand(kCommand, kUsage, argc, argv,
                        {{"create", create},
                         {"exec", exec},
                         {"snapshot", snapshot},
                         {"ls", list},
                         {"list", list},
                         {"kill", kill},
                         {"rm", kill}});
}

}  // namespace wisp::cli
