// agent_probe: a throwaway host-side client for checking wisp-agent by hand (the real client
// library is api/agent_client.*). Reaches the agent through wisp's vsock Unix socket.
//
//   agent_probe UDS ping
//   agent_probe UDS exec [--timeout MS] [--mem BYTES] [--pids N] [--out BYTES] -- CMD ARGS...
//                                                   (payload: stdin)
//   agent_probe UDS start-worker NAME -- CMD ARGS...
//   agent_probe UDS worker NAME [--timeout MS]      (payload: stdin)
//   agent_probe UDS bench-exec N -- CMD ...  |  bench-worker NAME N
//   agent_probe UDS resumed | prepare | shutdown
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "api/agent.capnp.h"

namespace {

using wisp::api::Agent;

int ConnectAgent(const char* uds) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_SYSCALL(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, uds, sizeof(addr.sun_path) - 1);
  KJ_SYSCALL(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), uds);
  std::string hello = "CONNECT " + std::to_string(Agent::PORT) + "\n";
  KJ_SYSCALL(write(fd, hello.data(), hello.size()));
  std::string line;
  char c;
  while (line.size() < 32) {  // byte by byte: what follows the line is the RPC stream
    ssize_t n = read(fd, &c, 1);
    KJ_REQUIRE(n == 1, "no agent listening (handshake got EOF)");
    if (c == '\n') break;
    line += c;
  }
  KJ_REQUIRE(line.rfind("OK ", 0) == 0, "bad handshake reply", line);
  return fd;
}

std::string ReadStdin() {
  std::string s;
  char buf[65536];
  ssize_t n;
  while ((n = read(0, buf, sizeof(buf))) > 0) s.append(buf, n);
  return s;
}

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct Options {
  uint64_t timeout_ms = 30000, mem = 0, out = 0;
  uint32_t pids = 0;
  std::vector<std::string> argv;
};

Options ParseOptions(int argc, char** argv, int i) {
  Options o;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) o.argv.push_back(argv[i]);
      break;
    }
    KJ_REQUIRE(i + 1 < argc, "missing value", a);
    uint64_t v = strtoull(argv[++i], nullptr, 10);
    if (a == "--timeout")
      o.timeout_ms = v;
    else if (a == "--mem")
      o.mem = v;
    else if (a == "--pids")
      o.pids = static_cast<uint32_t>(v);
    else if (a == "--out")
      o.out = v;
    else
      KJ_FAIL_REQUIRE("unknown option", a);
  }
  return o;
}

void FillHandler(wisp::api::Handler::Builder h, const std::string& name, const Options& o) {
  h.setName(name);
  auto args = h.initArgv(o.argv.size());
  for (size_t j = 0; j < o.argv.size(); ++j) args.set(j, o.argv[j]);
  if (o.mem) h.getLimits().setMemoryBytes(o.mem);
  if (o.pids) h.getLimits().setPids(o.pids);
  if (o.out) h.getLimits().setMaxOutputBytes(o.out);
}

int PrintResult(wisp::api::InvokeResult::Reader r) {
  auto out = r.getStdout();
  fwrite(out.begin(), 1, out.size(), stdout);
  fflush(stdout);
  auto err = r.getStderr();
  fwrite(err.begin(), 1, err.size(), stderr);
  fprintf(stderr,
          "[probe] %s=%d timedOut=%d truncated=%d limit='%s' error='%s' duration=%.3fms "
          "peakMem=%llu cpu=%.3fms stdout=%zu stderr=%zu\n",
          r.isSignal() ? "signal" : "exitCode", r.isSignal() ? r.getSignal() : r.getExitCode(),
          r.getTimedOut(), r.getOutputTruncated(), r.getLimitExceeded().cStr(), r.getError().cStr(),
          r.getDurationNs() / 1e6, (unsigned long long)r.getPeakMemoryBytes(),
          r.getCpuTimeNs() / 1e6, out.size(), err.size());
  return r.isSignal() ? 128 + r.getSignal() : r.getExitCode();
}

void Bench(const char* what, std::vector<double>& ms) {
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, size_t(p * ms.size()))]; };
  fprintf(stderr, "[probe] %s n=%zu p50=%.3fms p99=%.3fms min=%.3fms max=%.3fms\n", what, ms.size(),
          pct(0.5), pct(0.99), ms.front(), ms.back());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr,
            "usage: %s UDS ping|exec|start-worker|worker|bench-exec|bench-worker|"
            "resumed|prepare|shutdown ...\n",
            argv[0]);
    return 2;
  }
  auto io = kj::setupAsyncIo();
  double t0 = NowMs();
  auto stream = io.lowLevelProvider->wrapSocketFd(ConnectAgent(argv[1]),
                                                  kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  capnp::ReaderOptions opts;
  opts.traversalLimitInWords = Agent::MAX_MESSAGE_BYTES / 8;
  capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::CLIENT, opts);
  auto rpc = capnp::makeRpcClient(network);
  capnp::MallocMessageBuilder vat_id_message;
  auto vat_id = vat_id_message.initRoot<capnp::rpc::twoparty::VatId>();
  vat_id.setSide(capnp::rpc::twoparty::Side::SERVER);
  auto agent = rpc.bootstrap(vat_id).castAs<Agent>();
  auto& ws = io.waitScope;
  std::string cmd = argv[2];

  if (cmd == "ping") {
    auto info = agent.pingRequest().send().wait(ws).getInfo();
    fprintf(stderr, "[probe] connect+ping %.3fms\n", NowMs() - t0);
    printf("protocol=%u agent=%s bootId=%s uptime=%.3fms started=%.3fms ready=%.3fms workers=%u\n",
           info.getProtocolVersion(), info.getAgentVersion().cStr(), info.getBootId().cStr(),
           info.getUptimeNs() / 1e6, info.getStartedNs() / 1e6, info.getReadyNs() / 1e6,
           info.getWorkers().size());
    return 0;
  }
  if (cmd == "exec" || cmd == "worker" || cmd == "bench-exec" || cmd == "bench-worker") {
    bool worker = cmd == "worker" || cmd == "bench-worker";
    bool bench = cmd.rfind("bench", 0) == 0;
    int i = 3;
    std::string name = worker ? argv[i++] : "exec";
    int n = bench ? atoi(argv[i++]) : 1;
    Options o = ParseOptions(argc, argv, i);
    std::string payload = bench ? "" : ReadStdin();
    std::vector<double> ms;
    int rc = 0;
    for (int k = 0; k < n; ++k) {
      auto req = agent.invokeRequest();
      auto r = req.initRequest();
      r.setMode(worker ? wisp::api::InvokeRequest::Mode::WORKER
                       : wisp::api::InvokeRequest::Mode::EXEC);
      FillHandler(r.initHandler(), name, o);
      r.setPayload(kj::arrayPtr(reinterpret_cast<const kj::byte*>(payload.data()), payload.size()));
      r.setTimeoutMs(o.timeout_ms);
      double s = NowMs();
      auto resp = req.send().wait(ws);
      ms.push_back(NowMs() - s);
      if (!bench) rc = PrintResult(resp.getResult());
    }
    if (bench) Bench(cmd.c_str(), ms);
    return rc;
  }
  if (cmd == "start-worker") {
    auto req = agent.startWorkerRequest();
    FillHandler(req.initHandler(), argv[3], ParseOptions(argc, argv, 4));
    req.send().wait(ws);
    return 0;
  }
  if (cmd == "resumed") {
    auto req = agent.resumedRequest();
    auto e = req.initEntropy(64);
    for (auto& b : e) b = static_cast<kj::byte>(rand());
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    req.setWallClockUnixNs(int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec);
    req.send().wait(ws);
    return 0;
  }
  if (cmd == "prepare") {
    agent.prepareSnapshotRequest().send().wait(ws);
    return 0;
  }
  if (cmd == "shutdown") {
    agent.shutdownRequest().send().wait(ws);
    return 0;
  }
  fprintf(stderr, "unknown command %s\n", cmd.c_str());
  return 2;
}
