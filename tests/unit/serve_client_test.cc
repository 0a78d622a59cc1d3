// cli/serve_client against an in-process Wisp server on a Unix socket (its own thread and KJ
// loop): results and timings arrive whole, serve's error words become ServeError kinds, a
// cancelled call is dropped on the server's side too, streamed exec carries stdin and output,
// and a serve without execStream gets Sandbox.exec instead.
#include "cli/serve_client.h"

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

#include "api/wisp.capnp.h"
#include "base/file_io.h"
#include "base/unique_fd.h"

namespace wisp::cli {
namespace {

std::string text(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}
kj::ArrayPtr<const capnp::byte> bytes(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const capnp::byte*>(s.data()), s.size());
}

std::atomic<bool> g_slow_call_cancelled{false};

// Sets the flag when the promise it is attached to is dropped.
struct CancelMark {
  ~CancelMark() { g_slow_call_cancelled = true; }
};

// Echoes stdin back on stdout once stdin is closed, then exits 3.
class FakeProcess final : public api::serve::Process::Server {
 public:
  explicit FakeProcess(api::serve::OutputSink::Client sink) : sink_(kj::mv(sink)) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    closed_ = paf.promise.fork();
    fulfiller_ = kj::mv(paf.fulfiller);
  }
  kj::Promise<void> write(WriteContext context) override {
    input_ += text(context.getParams().getData());
    return kj::READY_NOW;
  }
  kj::Promise<void> closeStdin(CloseStdinContext) override {
    auto req = sink_.stdoutRequest();
    req.setData(bytes("got:" + input_));
    return req.send()
        .then([this]() {
          auto err = sink_.stderrRequest();
          err.setData(bytes("a warning\n"));
          return err.send();
        })
        .then([this]() { fulfiller_->fulfill(); });
  }
  kj::Promise<void> signal(SignalContext) override { return kj::READY_NOW; }
  kj::Promise<void> wait(WaitContext context) override {
    return closed_.addBranch().then(
        [context]() mutable { context.getResults().initResponse().setExitCode(3); });
  }

 private:
  api::serve::OutputSink::Client sink_;
  std::string input_;
  kj::ForkedPromise<void> closed_ = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> fulfiller_;
};

// "stream": has execStream. "old": only exec (execStream unimplemented).
class FakeSandbox final : public api::serve::Sandbox::Server {
 public:
  explicit FakeSandbox(bool streams) : streams_(streams) {}
  kj::Promise<void> execStream(ExecStreamContext context) override {
    if (!streams_) return Server::execStream(context);
    auto p = context.getParams();
    EXPECT_EQ(p.getRequest().getArgv().size(), 2u);
    context.getResults().setProcess(kj::heap<FakeProcess>(p.getOutput()));
    return kj::READY_NOW;
  }
  kj::Promise<void> exec(ExecContext context) override {
    auto r = context.getResults().initResponse();
    r.setStdout(bytes("whole:" + text(context.getParams().getRequest().getStdin())));
    r.setExitCode(5);
    return kj::READY_NOW;
  }
  kj::Promise<void> kill(KillContext) override { return kj::READY_NOW; }

 private:
  bool streams_;
};

class FakeSandboxes final : public api::serve::Sandboxes::Server {
 public:
  kj::Promise<void> create(CreateContext context) override {
    auto info = context.getResults().initInfo();
    info.setId("sb-" + std::string(context.getParams().getTemplate().cStr()));
    info.setTemplate(context.getParams().getTemplate());
    EXPECT_TRUE(context.getParams().getDetached());
    return kj::READY_NOW;
  }
  kj::Promise<void> get(GetContext context) override {
    std::string id = context.getParams().getId();
    if (id != "stream" && id != "old")
      return KJ_EXCEPTION(FAILED, kj::str("not-found: sandbox ", id.c_str()));
    context.getResults().setSandbox(kj::heap<FakeSandbox>(id == "stream"));
    return kj::READY_NOW;
  }
  kj::Promise<void> list(ListContext context) override {
    auto l = context.getResults().initSandboxes(1);
    l[0].setId("stream");
    l[0].setState("running");
    return kj::READY_NOW;
  }
};

class FakeWisp final : public api::serve::Wisp::Server {
 public:
  kj::Promise<void> version(VersionContext context) override {
    context.getResults().initInfo().setApiVersion(api::serve::API_VERSION);
    return kj::READY_NOW;
  }
  kj::Promise<void> sandboxes(SandboxesContext context) override {
    context.getResults().setSandboxes(kj::heap<FakeSandboxes>());
    return kj::READY_NOW;
  }
  kj::Promise<void> invoke(InvokeContext context) override {
    std::string name = context.getParams().getTemplate();
    std::string payload = text(context.getParams().getRequest().getPayload());
    if (name == "gone") return KJ_EXCEPTION(FAILED, "not-found: template gone is not in the store");
    if (name == "crash") return KJ_EXCEPTION(DISCONNECTED, "vm-failed: the VMM died\nlog tail");
    if (name == "slow") {
      // As serve must: capnp 0.9 cancels a server's call only when it allows it.
      context.allowCancellation();
      return kj::Promise<void>(kj::NEVER_DONE).attach(kj::heap<CancelMark>());
    }
    auto r = context.getResults().initResponse();
    r.setStdout(bytes(payload));
    r.setStderr(bytes("err"));
    r.setExitCode(42);
    r.initTimings().setTotalMs(1.5);
    r.getTimings().setPooled(true);
    return kj::READY_NOW;
  }
};

// The server thread: listens on `path` until stop().
class FakeServe {
 public:
  FakeServe() {
    path_ = "/tmp/wisp-serve-client-test-" + std::to_string(getpid()) + ".sock";
    ::unlink(path_.c_str());
    thread_ = std::thread([this]() { run(); });
    while (!ready_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeServe() {
    uint64_t one = 1;
    EXPECT_EQ(::write(stop_.get(), &one, sizeof(one)), 8);
    thread_.join();
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  void run() {
    auto io = kj::setupAsyncIo();
    capnp::TwoPartyServer server(kj::heap<FakeWisp>());
    auto addr =
        io.provider->getNetwork().parseAddress(kj::str("unix:", path_.c_str())).wait(io.waitScope);
    auto listener = addr->listen();
    kj::UnixEventPort::FdObserver stop(io.unixEventPort, stop_.get(),
                                       kj::UnixEventPort::FdObserver::OBSERVE_READ);
    auto serving = server.listen(*listener);
    ready_ = true;
    serving.exclusiveJoin(stop.whenBecomesReadable()).wait(io.waitScope);
  }

  std::string path_;
  UniqueFd stop_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  std::atomic<bool> ready_{false};
  std::thread thread_;
};

TEST(ServeClient, InvokeReturnsTheResultWhole) {
  FakeServe serve;
  auto c = ServeClient::connect(serve.path());
  ServeInvokeResult r = c->invoke("echo", "payload-1", 1000, 1000);
  EXPECT_EQ(r.result.out, "payload-1");
  EXPECT_EQ(r.result.err, "err");
  EXPECT_EQ(r.result.exit_code, 42);
  EXPECT_FALSE(r.result.signaled);
  EXPECT_DOUBLE_EQ(r.timings.total_ms, 1.5);
  EXPECT_TRUE(r.timings.pooled);
  // The same connection serves the next call.
  EXPECT_EQ(c->invoke("echo", "payload-2", 1000, 1000).result.out, "payload-2");
}

TEST(ServeClient, ServesErrorWordsBecomeKinds) {
  FakeServe serve;
  auto c = ServeClient::connect(serve.path());
  try {
    c->invoke("gone", "", 1000, 1000);
    FAIL() << "no exception";
  } catch (const ServeError& e) {
    EXPECT_EQ(e.kind(), "not-found");
    EXPECT_EQ(std::string(e.what()), "not-found: template gone is not in the store");
  }
  try {
    c->invoke("crash", "", 1000, 1000);
    FAIL() << "no exception";
  } catch (const ServeError& e) {
    EXPECT_EQ(e.kind(), "vm-failed");
    EXPECT_NE(std::string(e.what()).find("log tail"), std::string::npos);
  }
  EXPECT_THROW(c->invoke("echo", std::string(api::serve::Wisp::MAX_PAYLOAD_BYTES + 1, 'x'), 1, 1),
               ServeError);
}

TEST(ServeClient, UnreachableSocketIsNamed) {
  try {
    ServeClient::connect("/nonexistent/wisp.sock");
    FAIL() << "no exception";
  } catch (const ServeError& e) {
    EXPECT_EQ(e.kind(), "unreachable");
    EXPECT_NE(std::string(e.what()).find("/nonexistent/wisp.sock"), std::string::npos);
  }
}

TEST(ServeClient, CancelDropsTheCallOnTheServer) {
  FakeServe serve;
  UniqueFd cancel(::eventfd(0, EFD_CLOEXEC));
  auto c = ServeClient::connect(serve.path(), cancel.get());
  g_slow_call_cancelled = false;
  std::thread poke([&cancel]() {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    uint64_t one = 1;
    EXPECT_EQ(::write(cancel.get(), &one, sizeof(one)), 8);
  });
  EXPECT_THROW(c->invoke("slow", "", 60000, 1000), ServeCancelled);
  poke.join();
  // The CLI then exits: its connection closes, and serve drops the call (its VM goes).
  c.reset();
  for (int i = 0; i < 2000 && !g_slow_call_cancelled; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(g_slow_call_cancelled);
}

// A pipe holding `input`, closed for writing; and a temporary file for output.
UniqueFd input_fd(const std::string& input) {
  int p[2];
  EXPECT_EQ(::pipe(p), 0);
  EXPECT_TRUE(write_all(p[1], input));
  ::close(p[1]);
  return UniqueFd(p[0]);
}
UniqueFd temp_fd() {
  char name[] = "/tmp/wisp-serve-client-out-XXXXXX";
  int fd = ::mkstemp(name);
  ::unlink(name);
  return UniqueFd(fd);
}
std::string contents(int fd) {
  ::lseek(fd, 0, SEEK_SET);
  return read_all_fd(fd);
}

TEST(ServeClient, ExecStreamsStdinAndOutput) {
  FakeServe serve;
  auto c = ServeClient::connect(serve.path());
  UniqueFd in = input_fd("hello stdin"), out = temp_fd(), err = temp_fd();
  client::InvokeResult r =
      c->exec("stream", {{"cat", "-"}, {}, 1000}, in.get(), out.get(), err.get());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(contents(out.get()), "got:hello stdin");
  EXPECT_EQ(contents(err.get()), "a warning\n");
}

TEST(ServeClient, ExecFallsBackWithoutExecStream) {
  FakeServe serve;
  auto c = ServeClient::connect(serve.path());
  UniqueFd in = input_fd("all of it"), out = temp_fd(), err = temp_fd();
  client::InvokeResult r = c->exec("old", {{"cat", "-"}, {}, 1000}, in.get(), out.get(), err.get());
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.out, "whole:all of it");
}

TEST(ServeClient, SandboxCreateListKillAndUnknownId) {
  FakeServe serve;
  auto c = ServeClient::connect(serve.path());
  EXPECT_EQ(c->create_sandbox("tpl", 1000, 1000).id, "sb-tpl");
  auto all = c->list_sandboxes();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].state, "running");
  c->kill_sandbox("stream");
  try {
    c->kill_sandbox("nope");
    FAIL() << "no exception";
  } catch (const ServeError& e) {
    EXPECT_EQ(e.kind(), "not-found");
  }
}

TEST(ServeClient, ServerSocketFromOptionOrEnvironment) {
  ::setenv("WISP_SERVER", "/env.sock", 1);
  EXPECT_EQ(server_socket("/opt.sock"), "/opt.sock");
  EXPECT_EQ(server_socket(""), "/env.sock");
  ::unsetenv("WISP_SERVER");
  EXPECT_EQ(server_socket(""), "");
}

}  // namespace
}  // namespace wisp::cli
