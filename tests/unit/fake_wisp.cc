#include "tests/unit/fake_wisp.h"

#include <kj/debug.h>

namespace wisp::testutil {
namespace {

using api::serve::InvokeResponse;

[[noreturn]] void throw_word(const std::string& description,
                             kj::Exception::Type type = kj::Exception::Type::FAILED) {
  kj::throwFatalException(kj::Exception(type, __FILE__, __LINE__, kj::str(description.c_str())));
}

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

void fill_timings(api::serve::Timings::Builder t) {
  t.setQueueMs(0.25);
  t.setRestoreMs(3.5);
  t.setReconnectMs(1.25);
  t.setInvokeMs(2.0);
  t.setTotalMs(7.0);
  t.setPooled(true);
  // Served from a CRIU image (issue 17): the gateway's Wisp-Timings carries its stages too.
  t.setCriuFallback(true);
  t.setBootMs(40.5);
  t.setCriuRestoreMs(12.25);
  t.setCriuSource("drive");
}

// What the handler of template `name` did with `payload`.
void run_template(const std::string& name, const std::string& payload, InvokeResponse::Builder r) {
  auto bytes = [](const std::string& s) {
    return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
  };
  fill_timings(r.initTimings());
  if (name == "echo") {
    r.setStdout(bytes(payload));
    r.setStderr(bytes("err:" + payload));
    r.setExitCode(3);
  } else if (name == "big") {
    r.setStderr(bytes(std::string(20 * 1024, 'e')));
    r.setExitCode(0);
  } else if (name == "slow") {
    r.setTimedOut(true);
    r.setSignal(9);
  } else if (name == "oom") {
    r.setLimitExceeded("memory");
    r.setSignal(9);
  } else if (name == "signal") {
    r.setSignal(9);
  } else if (name == "broken") {
    r.setError("exec: no such file");
  } else if (name == "busy") {
    throw_word("overloaded: no capacity for template busy before its deadline");
  } else if (name == "drain") {
    throw_word("draining: serve is shutting down");
  } else if (name == "crash") {
    throw_word("vm-failed: the VMM died; log tail: boom");
  } else if (name == "remote") {
    throw_word("remote exception: not-found: template remote");
  } else if (name == "gone") {
    throw_word("connection lost", kj::Exception::Type::DISCONNECTED);
  } else {
    throw_word("not-found: template " + name);
  }
}

class FakeTemplates final : public api::serve::Templates::Server {
 protected:
  kj::Promise<void> list(ListContext context) override {
    auto list = context.getResults().initTemplates(2);
    list[0].setName("echo");
    list[0].setMode("exec");
    list[0].initArgv(1).set(0, "/bin/cat");
    list[0].setMemMib(256);
    list[0].setVcpus(1);
    list[1].setName("big");
    list[1].setMode("worker");
    list[1].setWarm(2);
    list[1].setWarmReady(1);
    return kj::READY_NOW;
  }
};

// Sandbox.execStream's process: stdout gets the argv joined by ' ' and a newline at once,
// then each stdin write as it comes; closeStdin ends it with exit code 0 (argv[0] "exit7": 7),
// a signal ends it with that signal.
class FakeProcess final : public api::serve::Process::Server {
 public:
  FakeProcess(FakeWispState& state, api::serve::OutputSink::Client sink, std::string first_line,
              int exit_code)
      : state_(state), sink_(kj::mv(sink)), exit_code_(exit_code) {
    out(first_line + "\n");
  }

 protected:
  kj::Promise<void> write(WriteContext context) override {
    auto d = context.getParams().getData();
    std::string s(reinterpret_cast<const char*>(d.begin()), d.size());
    state_.stream_stdin += s;
    out(s);
    return kj::READY_NOW;
  }
  kj::Promise<void> closeStdin(CloseStdinContext) override {
    ++state_.stdin_closes;
    end(false, exit_code_);
    return kj::READY_NOW;
  }
  kj::Promise<void> signal(SignalContext context) override {
    state_.signals.push_back(context.getParams().getSignal());
    end(true, context.getParams().getSignal());
    return kj::READY_NOW;
  }
  kj::Promise<void> resize(ResizeContext context) override {
    state_.resizes.emplace_back(context.getParams().getWidth(), context.getParams().getHeight());
    return kj::READY_NOW;
  }
  kj::Promise<void> wait(WaitContext context) override {
    return ended_.addBranch().then([this, context]() mutable {
      auto r = context.getResults().initResponse();
      if (signalled_) {
        r.setSignal(code_);
      } else {
        r.setExitCode(code_);
      }
    });
  }

 private:
  void out(const std::string& s) {
    auto req = sink_.stdoutRequest();
    req.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size()));
    writes_.add(req.send());
  }
  void end(bool signalled, int code) {
    if (done_) return;
    done_ = true;
    signalled_ = signalled;
    code_ = code;
    fulfiller_->fulfill();
  }
  class Ignore final : public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  };
  FakeWispState& state_;
  api::serve::OutputSink::Client sink_;
  int exit_code_;
  bool done_ = false, signalled_ = false;
  int code_ = 0;
  Ignore ignore_;
  kj::TaskSet writes_{ignore_};
  kj::Own<kj::PromiseFulfiller<void>> fulfiller_;
  kj::ForkedPromise<void> ended_ = [this] {
    auto paf = kj::newPromiseAndFulfiller<void>();
    fulfiller_ = kj::mv(paf.fulfiller);
    return paf.promise.fork();
  }();
};

class FakeSandbox final : public api::serve::Sandbox::Server {
 public:
  explicit FakeSandbox(FakeWispState& state) : state_(state) {}

 protected:
  kj::Promise<void> execStream(ExecStreamContext context) override {
    if (state_.paused) throw_word("bad-request: sandbox sb-1 is paused (resume it first)");
    auto p = context.getParams();
    std::vector<std::string> argv;
    std::string line;
    for (auto a : p.getRequest().getArgv()) {
      argv.push_back(text(a));
      line += (line.empty() ? "" : " ") + text(a);
    }
    if (argv.empty() || argv[0] == "missing") throw_word("bad-request: argv: no such command");
    state_.streams.push_back(argv);
    auto r = p.getRequest();
    state_.stream_terminals.push_back(r.getTerminal());
    state_.stream_sizes.emplace_back(r.getConsoleWidth(), r.getConsoleHeight());
    context.getResults().setProcess(
        kj::heap<FakeProcess>(state_, p.getOutput(), line, argv[0] == "exit7" ? 7 : 0));
    return kj::READY_NOW;
  }
  kj::Promise<void> pause(PauseContext) override {
    ++state_.pauses;
    state_.paused = true;
    return kj::READY_NOW;
  }
  kj::Promise<void> resume(ResumeContext) override {
    ++state_.resumes;
    state_.paused = false;
    return kj::READY_NOW;
  }
  kj::Promise<void> snapshot(SnapshotContext context) override {
    std::string name = text(context.getParams().getName());
    if (state_.snapshot_refused) throw_word("bad-request: template " + name + " exists");
    state_.snapshots.push_back(name);
    auto t = context.getResults().initTemplate();
    t.setName(name);
    t.setParent("echo");
    return kj::READY_NOW;
  }
  kj::Promise<void> exec(ExecContext context) override {
    auto req = context.getParams().getRequest();
    state_.exec_argv.clear();
    std::string out;
    for (auto a : req.getArgv()) {
      state_.exec_argv.push_back(text(a));
      out += (out.empty() ? "" : " ") + text(a);
    }
    auto in = req.getStdin();
    state_.exec_stdin.assign(reinterpret_cast<const char*>(in.begin()), in.size());
    out += state_.exec_stdin;
    auto r = context.getResults().initResponse();
    r.setStdout(kj::arrayPtr(reinterpret_cast<const kj::byte*>(out.data()), out.size()));
    r.setExitCode(0);
    fill_timings(r.initTimings());
    return kj::READY_NOW;
  }
  kj::Promise<void> kill(KillContext) override {
    ++state_.kills;
    return kj::READY_NOW;
  }

 private:
  FakeWispState& state_;
};

class FakeSandboxes final : public api::serve::Sandboxes::Server {
 public:
  explicit FakeSandboxes(FakeWispState& state) : state_(state) {}

 protected:
  kj::Promise<void> create(CreateContext context) override {
    auto p = context.getParams();
    if (text(p.getTemplate()) == "missing") throw_word("not-found: template missing");
    ++state_.creates;
    state_.created_template = text(p.getTemplate());
    state_.created_timeout_ms = p.getTimeoutMs();
    state_.created_detached = p.getDetached();
    auto r = context.getResults();
    r.setSandbox(kj::heap<FakeSandbox>(state_));
    auto info = r.initInfo();
    info.setId("sb-1");
    info.setTemplate(p.getTemplate());
    info.setState("running");
    info.setCreatedUnixMs(1000);
    info.setExpiresUnixMs(1000 + p.getTimeoutMs());
    info.setMemMib(256);
    return kj::READY_NOW;
  }
  kj::Promise<void> get(GetContext context) override {
    std::string id = text(context.getParams().getId());
    if (id != "sb-1") throw_word("not-found: sandbox " + id);
    context.getResults().setSandbox(kj::heap<FakeSandbox>(state_));
    return kj::READY_NOW;
  }

 private:
  FakeWispState& state_;
};

class FakeWisp final : public api::serve::Wisp::Server {
 public:
  explicit FakeWisp(FakeWispState& state) : state_(state) {}

 protected:
  kj::Promise<void> version(VersionContext context) override {
    auto info = context.getResults().initInfo();
    info.setApiVersion(api::serve::API_VERSION);
    info.setWispVersion("test");
    info.setDraining(state_.draining);
    return kj::READY_NOW;
  }
  kj::Promise<void> templates(TemplatesContext context) override {
    context.getResults().setTemplates(kj::heap<FakeTemplates>());
    return kj::READY_NOW;
  }
  kj::Promise<void> sandboxes(SandboxesContext context) override {
    context.getResults().setSandboxes(kj::heap<FakeSandboxes>(state_));
    return kj::READY_NOW;
  }
  kj::Promise<void> invoke(InvokeContext context) override {
    auto p = context.getParams();
    ++state_.invokes;
    state_.last_template = text(p.getTemplate());
    auto payload = p.getRequest().getPayload();
    state_.last_payload.assign(reinterpret_cast<const char*>(payload.begin()), payload.size());
    state_.last_timeout_ms = p.getRequest().getTimeoutMs();
    state_.last_deadline_ms = p.getRequest().getDeadlineMs();
    run_template(state_.last_template, state_.last_payload, context.getResults().initResponse());
    return kj::READY_NOW;
  }
  kj::Promise<void> stats(StatsContext context) override {
    auto s = context.getResults().initStats();
    s.setVmsRunning(3);
    s.setMemoryCommittedMib(768);
    s.setMaxVms(64);
    s.setMaxMemoryMib(4096);
    s.setPoolIdle(2);
    s.setHugePageLayerFiles(1);
    s.setHugePageLayerBytes(12u << 20);
    s.setPoolTarget(4);
    s.setSandboxes(1);
    s.setWaiting(0);
    s.setDraining(state_.draining);
    auto templates = s.initTemplates(2);
    templates[0].setName("echo");
    templates[0].setWarmReady(1);
    templates[0].setWarmTarget(2);
    templates[0].setInFlight(1);
    templates[0].setCriuFallbacks(3);
    templates[0].setWarmTouchedPages(4096);
    auto outcomes = templates[0].initOutcomes(2);
    outcomes[0].setOutcome("ok");
    outcomes[0].setCount(10);
    outcomes[1].setOutcome("timeout");
    outcomes[1].setCount(2);
    templates[1].setName(state_.odd_template);
    templates[1].initOutcomes(1)[0].setOutcome("vm_failed");
    templates[1].getOutcomes()[0].setCount(1);
    auto stages = s.initStages(3);
    const char* names[] = {"restore", "total", "broken"};
    for (unsigned i = 0; i < 3; ++i) {
      stages[i].setStage(names[i]);
      auto bounds = stages[i].initBucketBounds(3);
      bounds.set(0, 0.001);
      bounds.set(1, 0.01);
      bounds.set(2, 0.1);
      // "broken" is not cumulative: the gateway must leave it out.
      auto counts = stages[i].initBucketCounts(4);
      uint64_t c[] = {1, 5, 9, 12};
      if (i == 2) c[1] = 0;
      for (unsigned j = 0; j < 4; ++j) counts.set(j, c[j]);
      stages[i].setSum(0.375);
      stages[i].setCount(12);
    }
    return kj::READY_NOW;
  }

 private:
  FakeWispState& state_;
};

}  // namespace

api::serve::Wisp::Client make_fake_wisp(FakeWispState& state) { return kj::heap<FakeWisp>(state); }

}  // namespace wisp::testutil
