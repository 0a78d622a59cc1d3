// The guest agent end to end: `wisp exec` as a user runs it, and the host client library
// against one long-running agent VM (one boot for the whole suite: under the nested-KVM testbed
// a boot costs seconds). Needs build/guest/agent-initramfs.cpio.gz (the wisp-agent guest).
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "api/agent_client.h"
#include "tests/integration/wisp_runner.h"

extern char** environ;

namespace wisp::testing {
namespace {

using client::AgentClient;
using client::InvokeRequest;
using client::InvokeResult;
using std::chrono::milliseconds;

// A stateful worker in busybox sh speaking api/ worker framing: request = u32 LE length +
// payload; response = u32 LE length + u8 status + result. It answers with a call counter, so
// the count shows that state survives between invocations.
constexpr const char* kCountingWorker = R"(n=0
while :; do
  len=$(dd bs=1 count=4 2>/dev/null | od -An -tu4 | tr -d ' ')
  [ -n "$len" ] || exit 0
  [ "$len" -gt 0 ] && dd bs=1 count="$len" of=/dev/null 2>/dev/null
  n=$((n+1)); l=${#n}
  printf "\\$(printf %o "$l")\\000\\000\\000\\000%s" "$n"
done)";

// WISP_AGENT_INITRD overrides the guest (e.g. an agent build under test).
std::string agent_initrd() {
  const char* p = std::getenv("WISP_AGENT_INITRD");
  return p && *p ? p : guest_file("agent-initramfs.cpio.gz");
}

bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

std::string describe(const InvokeResult& r) {
  std::ostringstream s;
  s << "exit=" << r.exit_code << " signaled=" << r.signaled << " signal=" << r.signal
    << " timed_out=" << r.timed_out << " truncated=" << r.output_truncated << " limit='"
    << r.limit_exceeded << "' out(" << r.out.size() << ")='" << r.out.substr(0, 400) << "' err='"
    << r.err.substr(0, 400) << "'";
  return s.str();
}

InvokeRequest exec_request(std::vector<std::string> argv, std::string payload = "",
                           uint64_t timeout_ms = 30000) {
  InvokeRequest r;
  r.handler.name = argv.empty() ? "" : argv[0];
  r.handler.argv = std::move(argv);
  r.payload = std::move(payload);
  r.timeout_ms = timeout_ms;
  return r;
}

InvokeRequest shell(const std::string& script, std::string payload = "",
                    uint64_t timeout_ms = 30000) {
  return exec_request({"sh", "-c", script}, std::move(payload), timeout_ms);
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

// True when the peer closes the connection within 30 s (it may send an RPC Abort first).
bool closed_by_peer(int fd) {
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[4096];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0) return false;  // timed out: still open
  }
}

// ---- wisp exec, as a person at a terminal uses it ----------------------------------------

class ExecCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(exists(agent_initrd()))
        << agent_initrd() << " is missing: build the agent guest (make guest)";
  }
  ProcessResult exec(const std::vector<std::string>& args, const std::string& input = "") {
    std::vector<std::string> argv = {wisp_binary(), "exec", "--initrd", agent_initrd()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, {{"", input}}, 300);
  }
};

TEST(ExecCliUsage, NoCommandIsAUsageError) {
  auto r = run_process({wisp_binary(), "exec", "--timeout", "1"}, {}, 30);
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("no command"), std::string::npos) << describe(r);
}

TEST(ExecCliUsage, MissingGuestIsAVmFailure) {
  auto r = run_process({wisp_binary(), "exec", "--initrd", "/nonexistent.cpio.gz", "--", "true"},
                       {}, 30);
  EXPECT_EQ(r.exit_code, 126) << describe(r);
  EXPECT_NE(r.err.find("/nonexistent.cpio.gz"), std::string::npos) << describe(r);
}

TEST_F(ExecCli, EchoHiThroughCat) {
  auto r = exec({"--", "cat"}, "hi\n");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "hi\n") << describe(r);
}

TEST_F(ExecCli, ExitCodeAndStderrComeBack) {
  auto r = exec({"--", "sh", "-c", "echo to-err >&2; echo to-out; exit 7"});
  EXPECT_EQ(r.exit_code, 7) << describe(r);
  EXPECT_EQ(r.out, "to-out\n") << describe(r);
  EXPECT_NE(r.err.find("to-err"), std::string::npos) << describe(r);
}

TEST_F(ExecCli, TimeoutExitsWith124) {
  auto r = exec({"--timeout", "2", "--", "sleep", "60"});
  EXPECT_EQ(r.exit_code, 124) << describe(r);
  EXPECT_NE(r.err.find("timeout"), std::string::npos) << describe(r);
}

TEST_F(ExecCli, SignalExitsWith128PlusN) {
  auto r = exec({"--", "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(r.exit_code, 128 + 9) << describe(r);
}

// ---- the client library against one agent VM ---------------------------------------------

class AgentVm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!exists(agent_initrd())) return;
    char dir[] = "/tmp/wisp-agent-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    sock_ = dir_ + "/vm.sock";
    std::vector<std::string> args = {
        wisp_binary(), "run", "--initrd",  agent_initrd(),        "--mem",     "512",
        "--vsock-uds", sock_, "--console", dir_ + "/console.log", "--cmdline", "quiet"};
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&vmm_, cargs[0], nullptr, nullptr, cargs.data(), environ), 0);
  }
  static void TearDownTestSuite() {
    if (vmm_ <= 0) return;
    try {
      connect()->shutdown();
    } catch (const std::exception&) {
    }
    for (int i = 0; i < 1000 && waitpid(vmm_, nullptr, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(milliseconds(10));
    kill(vmm_, SIGKILL);
    waitpid(vmm_, nullptr, 0);
    vmm_ = 0;
    std::system(("rm -rf " + dir_).c_str());
  }
  void SetUp() override {
    ASSERT_TRUE(exists(agent_initrd()))
        << agent_initrd() << " is missing: build the agent guest (make guest)";
    ASSERT_GT(vmm_, 0);
    agent_ = connect();
  }
  static std::unique_ptr<AgentClient> connect() {
    client::ConnectOptions o;
    o.uds_path = sock_;
    o.deadline = milliseconds(180000);
    pid_t pid = vmm_;
    o.keep_trying = [pid] { return kill(pid, 0) == 0 && waitpid(pid, nullptr, WNOHANG) == 0; };
    return AgentClient::connect(o);
  }
  std::string console() {
    std::ifstream f(dir_ + "/console.log");
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  // The agent survived whatever the previous call did: same boot, still answering.
  void expect_agent_alive(const std::string& boot_id) {
    auto fresh = connect();
    auto info = fresh->ping();
    EXPECT_EQ(info.boot_id, boot_id) << "the guest rebooted; console:\n" << console();
    auto r = fresh->invoke(shell("echo still-here"));
    EXPECT_EQ(r.out, "still-here\n") << describe(r);
  }

  static inline std::string dir_, sock_;
  static inline pid_t vmm_ = 0;
  std::unique_ptr<AgentClient> agent_;
};

TEST_F(AgentVm, PingReportsVersionAndBoot) {
  auto info = agent_->ping();
  EXPECT_EQ(info.protocol_version, client::protocol_version());
  EXPECT_FALSE(info.agent_version.empty());
  EXPECT_EQ(info.boot_id.size(), 36u) << info.boot_id;
  EXPECT_GT(info.uptime_ns, 0u);
}

TEST_F(AgentVm, SixteenMibPayloadBothWaysIntact) {
  std::string payload = random_bytes(16 << 20, 1);
  auto r = agent_->invoke(exec_request({"cat"}, payload, 120000));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_FALSE(r.output_truncated);
  EXPECT_TRUE(r.out == payload) << "got " << r.out.size() << " bytes back";
}

TEST_F(AgentVm, TwoHundredSequentialInvocations) {
  for (int i = 0; i < 200; ++i) {
    auto r = agent_->invoke(exec_request({"cat"}, "call " + std::to_string(i)));
    ASSERT_EQ(r.out, "call " + std::to_string(i)) << "call " << i << ": " << describe(r);
    ASSERT_EQ(r.exit_code, 0) << describe(r);
  }
}

TEST_F(AgentVm, EightConcurrentOnEightConnections) {
  std::vector<std::thread> threads;
  std::vector<std::string> outs(8), errors(8);
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      try {
        auto c = connect();
        outs[i] = c->invoke(shell("sleep 1; cat", "conn " + std::to_string(i))).out;
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(errors[i], "") << "connection " << i;
    EXPECT_EQ(outs[i], "conn " + std::to_string(i));
  }
}

TEST_F(AgentVm, EightConcurrentOnOneConnection) {
  std::vector<InvokeRequest> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back(shell("sleep 1; cat", "req " + std::to_string(i)));
  auto start = std::chrono::steady_clock::now();
  auto results = agent_->invoke_many(reqs);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(results.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(results[i].out, "req " + std::to_string(i));
  // Run one after another they would take 8 s; the agent must overlap them.
  EXPECT_LT(s, 7.0) << "8 calls of 1 s each took " << s << " s: not concurrent";
}

TEST_F(AgentVm, WorkerKeepsStateBetweenInvocations) {
  client::Handler h;
  h.name = "counter";
  h.argv = {"sh", "-c", kCountingWorker};
  agent_->start_worker(h);
  InvokeRequest req;
  req.mode = client::InvokeMode::kWorker;
  req.handler.name = "counter";
  for (int i = 1; i <= 3; ++i) {
    req.payload = "x";
    auto r = agent_->invoke(req);
    EXPECT_EQ(r.out, std::to_string(i)) << describe(r);
  }
  EXPECT_EQ(agent_->ping().workers, std::vector<std::string>{"counter"});
  agent_->stop_worker("counter");
}

TEST_F(AgentVm, TimeoutKillsTheTreeAndTheNextCallWorks) {
  auto boot = agent_->ping().boot_id;
  auto start = std::chrono::steady_clock::now();
  auto r = agent_->invoke(shell("sleep 100 & sleep 100; echo never", "", 1000));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(r.timed_out) << describe(r);
  EXPECT_EQ(r.out.find("never"), std::string::npos);
  EXPECT_LT(s, 20.0);
  expect_agent_alive(boot);
}

TEST_F(AgentVm, ForkBombIsContained) {
  auto boot = agent_->ping().boot_id;
  auto req = shell("b() { b | b & }; b; sleep 5", "", 10000);
  req.handler.limits.pids = 32;
  auto r = agent_->invoke(req);
  EXPECT_TRUE(r.limit_exceeded == "pids" || r.timed_out) << describe(r);
  expect_agent_alive(boot);
}

TEST_F(AgentVm, MemoryHogIsContained) {
  auto boot = agent_->ping().boot_id;
  auto req = shell("x=0123456789abcdef; while :; do x=$x$x; done", "", 30000);
  req.handler.limits.memory_bytes = 32 << 20;
  auto r = agent_->invoke(req);
  EXPECT_EQ(r.limit_exceeded, "memory") << describe(r);
  EXPECT_LE(r.peak_memory_bytes, uint64_t{40} << 20) << describe(r);
  expect_agent_alive(boot);
}

TEST_F(AgentVm, OneGibStdoutIsCappedAndReported) {
  auto boot = agent_->ping().boot_id;
  auto req = shell("head -c 1073741824 /dev/zero", "", 120000);
  req.handler.limits.max_output_bytes = 1 << 20;
  auto r = agent_->invoke(req);
  EXPECT_TRUE(r.output_truncated) << describe(r);
  EXPECT_EQ(r.limit_exceeded, "output") << describe(r);
  EXPECT_LE(r.out.size(), size_t{1} << 20);
  expect_agent_alive(boot);
}

TEST_F(AgentVm, HandlerIsUnprivileged) {
  auto r =
      agent_->invoke(shell("id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  std::istringstream lines(r.out);
  std::string uid;
  std::getline(lines, uid);
  EXPECT_NE(uid, "0") << describe(r);
  EXPECT_FALSE(uid.empty()) << describe(r);
  EXPECT_NE(r.out.find("CapEff:\t0000000000000000"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("NoNewPrivs:\t1"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("Seccomp:\t2"), std::string::npos) << describe(r);
}

TEST_F(AgentVm, PtraceMountAndSetuidFailAndPid1Survives) {
  std::ifstream f(WISP_SANDBOX_PROBE, std::ios::binary);
  ASSERT_TRUE(f) << WISP_SANDBOX_PROBE << " missing: build wisp_sandbox_probe";
  std::string probe((std::istreambuf_iterator<char>(f)), {});
  auto boot = agent_->ping().boot_id;
  // The probe arrives as the payload and runs from the first writable directory.
  auto r = agent_->invoke(
      shell("for d in \"$PWD\" \"$TMPDIR\" /tmp; do cat > \"$d/probe\" 2>/dev/null && break; done; "
            "chmod 700 \"$d/probe\" && \"$d/probe\"; kill -9 1; echo done",
            probe));
  EXPECT_NE(r.out.find("done"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("uid: 0\n"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("uid: "), std::string::npos) << describe(r);
  for (const char* call : {"ptrace", "mount", "setuid0"})
    EXPECT_EQ(r.out.find(std::string(call) + ": allowed"), std::string::npos)
        << call << " was allowed: " << describe(r);
  expect_agent_alive(boot);
}

// exec mode's pre-forked sandbox (agent/spare_sandbox.h): after a call the agent sets up a
// sandbox for the same handler, waiting before its execve; the next such call runs in it
// (preforked), sees what a fresh sandbox shows, and gets its own pids limit, timeout and exit
// status. Each wait gives the agent time to set the spare up (slow under the testbed).
TEST_F(AgentVm, SpareSandboxRunsTheNextSameCallAlike) {
  const std::string script =
      "read what; case $what in "
      "probe) id -u; id -g; hostname; ls /proc | grep -c '^[0-9]'; ulimit -n; ulimit -c; "
      "grep -E '^(Cap...|NoNewPrivs|Seccomp):' /proc/self/status; mount | cut -d' ' -f3,5,6; "
      "ls -A /dev /tmp; cat /proc/self/cgroup | wc -l; pwd; cat;; "
      "forks) for i in 1 2 3 4 5 6; do sleep 5 & done; wait;; "
      "hang) sleep 100;; "
      "exit) echo out; echo err >&2; exit 7;; esac";
  auto call = [&](const std::string& payload, uint32_t pids = 64, uint64_t timeout_ms = 30000) {
    auto req = shell(script, payload, timeout_ms);
    req.handler.limits.pids = pids;
    return agent_->invoke(req);
  };
  auto let_the_spare_settle = [] { std::this_thread::sleep_for(milliseconds(3000)); };
  InvokeResult fresh = call("probe\nrest of stdin");
  EXPECT_FALSE(fresh.preforked) << "no call of this handler before: " << describe(fresh);
  EXPECT_EQ(fresh.exit_code, 0) << describe(fresh);
  let_the_spare_settle();
  InvokeResult spare = call("probe\nrest of stdin");
  EXPECT_TRUE(spare.preforked) << describe(spare);
  EXPECT_EQ(spare.exit_code, 0) << describe(spare);
  EXPECT_EQ(spare.out, fresh.out) << "a pre-forked sandbox must look like a fresh one";
  EXPECT_NE(spare.out.find("rest of stdin"), std::string::npos) << describe(spare);

  // The spare was made with pids.max 64; this call's 4 is written before the go.
  let_the_spare_settle();
  InvokeResult forks = call("forks", 4);
  EXPECT_TRUE(forks.preforked) << describe(forks);
  EXPECT_EQ(forks.limit_exceeded, "pids") << describe(forks);

  let_the_spare_settle();
  InvokeResult hang = call("hang", 64, 1000);
  EXPECT_TRUE(hang.preforked) << describe(hang);
  EXPECT_TRUE(hang.timed_out) << describe(hang);
  EXPECT_LT(hang.duration_ns, uint64_t{20} * 1000000000) << describe(hang);

  let_the_spare_settle();
  InvokeResult exit = call("exit");
  EXPECT_TRUE(exit.preforked) << describe(exit);
  EXPECT_EQ(exit.exit_code, 7) << describe(exit);
  EXPECT_EQ(exit.out, "out\n") << describe(exit);
  EXPECT_EQ(exit.err, "err\n") << describe(exit);

  // Another handler does not fit the spare: a fresh sandbox, and the spare is replaced.
  InvokeResult other = agent_->invoke(shell("echo other"));
  EXPECT_FALSE(other.preforked) << describe(other);
  EXPECT_EQ(other.out, "other\n") << describe(other);
}

// The sandbox probe (ptrace, mount, setuid 0 refused) in a pre-forked sandbox too.
TEST_F(AgentVm, SpareSandboxRefusesWhatAFreshOneRefuses) {
  std::ifstream f(WISP_SANDBOX_PROBE, std::ios::binary);
  ASSERT_TRUE(f) << WISP_SANDBOX_PROBE << " missing: build wisp_sandbox_probe";
  std::string probe((std::istreambuf_iterator<char>(f)), {});
  auto req =
      shell("cat > /tmp/probe && chmod 700 /tmp/probe && /tmp/probe; echo spare-probe-done", probe);
  for (bool preforked : {false, true}) {
    auto r = agent_->invoke(req);
    EXPECT_EQ(r.preforked, preforked) << describe(r);
    EXPECT_NE(r.out.find("spare-probe-done"), std::string::npos) << describe(r);
    EXPECT_EQ(r.out.find("uid: 0\n"), std::string::npos) << describe(r);
    EXPECT_NE(r.out.find("uid: "), std::string::npos) << describe(r);
    for (const char* c : {"ptrace", "mount", "setuid0"})
      EXPECT_EQ(r.out.find(std::string(c) + ": allowed"), std::string::npos)
          << c << " was allowed (preforked " << preforked << "): " << describe(r);
    std::this_thread::sleep_for(milliseconds(3000));
  }
}

TEST_F(AgentVm, GarbageAfterConnectIsRejectedAndTheAgentStillAnswers) {
  auto boot = agent_->ping().boot_id;
  std::string why;
  int fd = client::vsock_uds_connect(sock_, client::agent_port(), milliseconds(10000), &why);
  ASSERT_GE(fd, 0) << why;
  std::string garbage = random_bytes(64 << 10, 7);
  [[maybe_unused]] ssize_t n = send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL);
  EXPECT_TRUE(closed_by_peer(fd)) << "the agent kept a garbage connection open";
  close(fd);
  expect_agent_alive(boot);
}

TEST_F(AgentVm, OversizedFrameIsRejectedAndTheAgentStillAnswers) {
  auto boot = agent_->ping().boot_id;
  std::string why;
  int fd = client::vsock_uds_connect(sock_, client::agent_port(), milliseconds(10000), &why);
  ASSERT_GE(fd, 0) << why;
  // A Cap'n Proto frame header: one segment of 2^28 words (2 GiB), far over the agent's cap.
  uint32_t header[2] = {0, 1u << 28};
  [[maybe_unused]] ssize_t n = send(fd, header, sizeof(header), MSG_NOSIGNAL);
  EXPECT_TRUE(closed_by_peer(fd)) << "the agent kept an oversized message's connection open";
  close(fd);
  expect_agent_alive(boot);
}

TEST_F(AgentVm, OversizedPayloadIsRefusedByTheClient) {
  InvokeRequest r = exec_request({"cat"}, std::string(client::max_message_bytes(), 'x'));
  EXPECT_THROW(agent_->invoke(r), Error);
  EXPECT_EQ(agent_->invoke(exec_request({"cat"}, "ok")).out, "ok");
}

// ---- execStream, putFile and getFile (wisp serve's sandboxes) ------------------------------

client::Handler shell_handler(const std::string& script) {
  client::Handler h;
  h.name = "stream";
  h.argv = {"sh", "-c", script};
  return h;
}

std::string joined(const std::vector<std::string>& chunks) {
  std::string all;
  for (const auto& c : chunks) all += c;
  return all;
}

// The command cannot end before the test answers what it printed: output is streamed.
TEST_F(AgentVm, StreamAnswersAPromptBeforeTheCommandEnds) {
  client::ExecStreamRequest r;
  r.handler = shell_handler("echo ready; read line; echo \"got $line\"; echo done >&2");
  r.close_stdin = false;
  std::vector<std::string> out;
  std::string err;
  bool answered = false;
  r.on_stdout = [&](const std::string& chunk, client::StreamControl& control) {
    out.push_back(chunk);
    if (!answered && joined(out).find("ready\n") != std::string::npos) {
      answered = true;
      control.write("hello\n");
      control.close_stdin();
    }
  };
  r.on_stderr = [&](const std::string& chunk, client::StreamControl&) { err += chunk; };
  auto result = agent_->exec_stream(r);
  EXPECT_TRUE(answered);
  EXPECT_EQ(joined(out), "ready\ngot hello\n") << describe(result);
  EXPECT_EQ(err, "done\n");
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_FALSE(result.signaled);
  EXPECT_TRUE(result.out.empty() && result.err.empty()) << describe(result);
}

TEST_F(AgentVm, StreamDeliversChunksInOrderAsTheyAreWritten) {
  using Clock = std::chrono::steady_clock;
  std::vector<std::pair<std::string, Clock::time_point>> chunks;
  auto result = agent_->exec_stream(
      shell_handler("for i in 1 2 3; do echo line$i; sleep 1; done"), 60000, "",
      [&](const std::string& c) { chunks.emplace_back(c, Clock::now()); }, nullptr);
  auto end = Clock::now();
  std::string all;
  for (auto& [c, t] : chunks) all += c;
  EXPECT_EQ(all, "line1\nline2\nline3\n") << describe(result);
  ASSERT_GE(chunks.size(), 2u) << "all output came in one piece: not streamed";
  // The guest slept 2 s after line1 at least: it must have arrived that much before the end.
  double lead = std::chrono::duration<double>(end - chunks.front().second).count();
  EXPECT_GT(lead, 1.5) << "the first line arrived only " << lead << " s before the end";
  EXPECT_EQ(result.exit_code, 0) << describe(result);
}

// Handler.terminal: the command runs on a pty of its own devpts instance (/dev/pts/0 in its
// sandbox), sized as asked; its stdout and stderr both arrive as the terminal's output (echo,
// CRLF); resize changes what `stty size` sees; closeStdin types ^D (end of file for `read`).
TEST_F(AgentVm, StreamRunsOnATerminalOfItsOwn) {
  ASSERT_TRUE(agent_->ping().terminals);
  client::ExecStreamRequest r;
  r.handler = shell_handler(
      "busybox tty; busybox stty size; read line; echo got:$line; busybox stty size; "
      "read rest || echo eof; echo to-stderr >&2; exit 4");
  r.handler.terminal = true;
  r.handler.console_width = 80;
  r.handler.console_height = 24;
  r.close_stdin = false;
  r.timeout_ms = 60000;
  std::string out, err;
  int stage = 0;
  r.on_stdout = [&](const std::string& chunk, client::StreamControl& control) {
    out += chunk;
    if (stage == 0 && out.find("24 80\r\n") != std::string::npos) {
      stage = 1;
      control.resize(100, 30);  // delivered before the write: the line sees the new size
      control.write("hello\n");
    } else if (stage == 1 && out.find("30 100\r\n") != std::string::npos) {
      stage = 2;
      control.close_stdin();
    }
  };
  r.on_stderr = [&](const std::string& chunk, client::StreamControl&) { err += chunk; };
  auto result = agent_->exec_stream(r);
  EXPECT_EQ(stage, 2) << out;
  EXPECT_EQ(out,
            "/dev/pts/0\r\n24 80\r\nhello\r\ngot:hello\r\n30 100\r\neof\r\n"
            "to-stderr\r\n")
      << describe(result);
  EXPECT_EQ(err, "");
  EXPECT_EQ(result.exit_code, 4) << describe(result);
}

// Only execStream runs a command on a terminal; resize of a command without one is refused.
TEST_F(AgentVm, TerminalIsRefusedOutsideExecStream) {
  auto req = exec_request({"true"}, "");
  req.handler.terminal = true;
  EXPECT_THROW(agent_->invoke(req), client::AgentError);
  client::ExecStreamRequest r;
  r.handler = shell_handler("echo ready; read x");
  r.close_stdin = false;
  r.on_stdout = [&](const std::string&, client::StreamControl& control) {
    control.resize(80, 24);
    control.close_stdin();
  };
  EXPECT_THROW(agent_->exec_stream(r), client::AgentError);
}

TEST_F(AgentVm, StreamStdinRoundTripsThroughCat) {
  std::string payload = random_bytes(1 << 20, 3);
  std::string out;
  auto result = agent_->exec_stream(
      shell_handler("cat"), 60000, payload, [&](const std::string& c) { out += c; }, nullptr);
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(out == payload) << "got " << out.size() << " bytes back";
}

TEST_F(AgentVm, StreamSignalEndsTheCommand) {
  client::ExecStreamRequest r;
  r.handler = shell_handler("echo ready; sleep 100 & sleep 100");
  r.timeout_ms = 60000;
  r.on_stdout = [&](const std::string& chunk, client::StreamControl& control) {
    if (chunk.find("ready") != std::string::npos) control.signal(SIGTERM);
  };
  auto start = std::chrono::steady_clock::now();
  auto result = agent_->exec_stream(r);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(result.signaled) << describe(result);
  EXPECT_EQ(result.signal, SIGTERM) << describe(result);
  EXPECT_FALSE(result.timed_out) << describe(result);
  EXPECT_LT(s, 30.0);
}

TEST_F(AgentVm, StreamTimeoutKillsTheTree) {
  auto boot = agent_->ping().boot_id;
  std::string out;
  auto start = std::chrono::steady_clock::now();
  auto result = agent_->exec_stream(
      shell_handler("echo start; sleep 100 & sleep 100; echo never"), 1500, "",
      [&](const std::string& c) { out += c; }, nullptr);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(result.timed_out) << describe(result);
  EXPECT_EQ(out, "start\n");
  EXPECT_LT(s, 20.0);
  expect_agent_alive(boot);
}

TEST_F(AgentVm, StreamStdoutIsCappedAndEndsTheCommand) {
  auto h = shell_handler("head -c 8388608 /dev/zero; echo never >&2");
  h.limits.max_output_bytes = 1 << 20;
  size_t got = 0;
  auto result = agent_->exec_stream(
      h, 60000, "", [&](const std::string& c) { got += c.size(); }, nullptr);
  EXPECT_EQ(got, size_t{1} << 20) << describe(result);
  EXPECT_TRUE(result.output_truncated) << describe(result);
  EXPECT_EQ(result.limit_exceeded, "output") << describe(result);
}

TEST_F(AgentVm, StreamBadRequestsAreRefused) {
  auto h = shell_handler("true");
  h.argv.clear();
  EXPECT_THROW(agent_->exec_stream(h, 1000, "", nullptr, nullptr), client::AgentError);
  EXPECT_THROW(agent_->exec_stream(shell_handler("true"), 0, "", nullptr, nullptr),
               client::AgentError);
  EXPECT_EQ(agent_->invoke(exec_request({"cat"}, "ok")).out, "ok");
}

// Letting go of the Process kills the command: its later write never happens.
TEST_F(AgentVm, DroppingTheProcessKillsTheCommand) {
  client::ExecStreamRequest r;
  r.handler = shell_handler("echo ready; sleep 2; echo alive > /scratch/drop-marker");
  r.on_stdout = [&](const std::string&, client::StreamControl& control) { control.drop(); };
  auto result = agent_->exec_stream(r);
  EXPECT_EQ(result.error, "dropped by the caller");
  std::this_thread::sleep_for(milliseconds(5000));
  EXPECT_THROW(agent_->get_file("drop-marker"), client::AgentError);
  auto check = agent_->invoke(shell("test -e /scratch/drop-marker && echo exists || echo gone"));
  EXPECT_EQ(check.out, "gone\n") << describe(check);
}

TEST_F(AgentVm, PutFileThenGetFileAndHandlersSeeScratch) {
  std::string data = random_bytes(1 << 20, 5);
  agent_->put_file("in/sub/data.bin", data, 0640);
  EXPECT_TRUE(agent_->get_file("in/sub/data.bin") == data);
  auto r = agent_->invoke(shell("cat /scratch/in/sub/data.bin"));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(r.out == data) << describe(r);
  r = agent_->invoke(shell("echo from-handler > /scratch/out.txt"));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(agent_->get_file("out.txt"), "from-handler\n");
  agent_->put_file("suid", "#!/bin/sh\n", 06755);
  r = agent_->invoke(shell("stat -c %a /scratch/suid /scratch/in/sub/data.bin"));
  EXPECT_EQ(r.out, "755\n640\n") << describe(r);
}

void expect_refused(const std::function<void()>& call, const std::string& part) {
  try {
    call();
    ADD_FAILURE() << "not refused; expected '" << part << "'";
  } catch (const client::AgentError& e) {
    EXPECT_EQ(e.kind(), client::AgentError::Kind::kRemote) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST_F(AgentVm, ScratchFilesRefuseBadPathsAndPlantedSymlinks) {
  expect_refused([&] { agent_->get_file("../x"); }, "..");
  expect_refused([&] { agent_->put_file("../x", "x"); }, "..");
  expect_refused([&] { agent_->get_file("/etc/passwd"); }, "absolute");
  expect_refused([&] { agent_->put_file("/etc/evil", "x"); }, "absolute");
  expect_refused([&] { agent_->get_file("a/../../etc/passwd"); }, "..");
  // Text cannot carry a NUL: the client refuses it (the agent's own check is unit-tested).
  EXPECT_THROW(agent_->get_file(std::string("a\0b", 3)), Error);
  auto r = agent_->invoke(
      shell("ln -s /etc/passwd /scratch/pw && ln -s /etc /scratch/etc-link && echo planted"));
  ASSERT_EQ(r.out, "planted\n") << describe(r);
  expect_refused([&] { agent_->get_file("pw"); }, "symlink");
  expect_refused([&] { agent_->get_file("etc-link/passwd"); }, "symlink");
  expect_refused([&] { agent_->put_file("etc-link/evil", "x"); }, "symlink");
  r = agent_->invoke(shell("test -e /etc/evil && echo written || echo absent"));
  EXPECT_EQ(r.out, "absent\n") << describe(r);
}

TEST_F(AgentVm, ScratchFilesOverTheCapAreRefused) {
  expect_refused([&] { agent_->put_file("big", std::string(client::max_file_bytes() + 1, 'x')); },
                 "size cap");
  auto r = agent_->invoke(shell("head -c 17000000 /dev/zero > /scratch/big-from-handler; echo $?"));
  ASSERT_EQ(r.out, "0\n") << describe(r);
  expect_refused([&] { agent_->get_file("big-from-handler"); }, "size cap");
  agent_->invoke(shell("rm -f /scratch/big-from-handler"));
}

}  // namespace
}  // namespace wisp::testing
