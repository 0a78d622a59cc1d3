#include "manager/service/serve.h"

#include <capnp/rpc-twoparty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"
#include "manager/service/peer_check.h"
#include "manager/service/wisp_server.h"

namespace wisp::service {
namespace {

// Connections served at once; more are closed at accept (each costs buffers and fds).
constexpr size_t kMaxConnections = 1024;

// One client connection: its RPC system serves a Wisp bootstrap capability.
struct Connection {
  Connection(kj::Own<kj::AsyncIoStream> s, api::serve::Wisp::Client wisp) : stream(kj::mv(s)) {
    capnp::ReaderOptions opts;
    // Wisp.maxMessageBytes: a message over it fails that call, never serve.
    opts.traversalLimitInWords = api::serve::Wisp::MAX_MESSAGE_BYTES / sizeof(capnp::word);
    opts.nestingLimit = 64;
    network =
        kj::heap<capnp::TwoPartyVatNetwork>(*stream, capnp::rpc::twoparty::Side::SERVER, opts);
    rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
        capnp::makeRpcServer(*network, kj::mv(wisp)));
  }
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
};

class LogErrors : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override { LOG_WARN("serve: %s", e.getDescription().cStr()); }
};

class Listener {
 public:
  Listener(kj::AsyncIoContext& io, int fd, api::serve::Wisp::Client wisp)
      : listener_(io.lowLevelProvider->wrapListenSocketFd(
            fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
        wisp_(kj::mv(wisp)) {}

  kj::Promise<void> accept_loop() {
    return listener_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
      std::string why;
      int fd = -1;
      KJ_IF_MAYBE (f, stream->getFd()) {
        fd = *f;
      }
      if (fd < 0 || !peer_allowed(fd, owner_, &why)) {
        LOG_WARN("serve: refused %s", why.c_str());
      } else if (!connections_) {
        // Closing down: the connection is dropped.
      } else if (open_ >= kMaxConnections) {
        LOG_WARN("serve: refused a connection: %zu connections are open", open_);
      } else {
        ++open_;
        auto conn = kj::heap<Connection>(kj::mv(stream), wisp_);
        auto done = conn->network->onDisconnect();
        connections_->add(done.attach(kj::mv(conn), kj::defer([this] { --open_; })));
      }
      return accept_loop();
    });
  }
  // Ends every connection now: their calls are cancelled, and with them their VMs.
  void close_all() { connections_ = nullptr; }

 private:
  kj::Own<kj::ConnectionReceiver> listener_;
  api::serve::Wisp::Client wisp_;
  uid_t owner_ = ::geteuid();
  size_t open_ = 0;
  LogErrors errors_;
  kj::Own<kj::TaskSet> connections_ = kj::heap<kj::TaskSet>(errors_);
};

}  // namespace

int listen_unix_socket(const std::string& path) {
  sockaddr_un addr;
  if (path.empty() || !unix_address(path, &addr))
    throw Error("--socket '" + path + "': empty or too long for a Unix socket (108 bytes)");
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw Error("--socket " + path + ": exists and is not a socket");
    // Replaced only when nothing listens on it (a serve that died without removing it).
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) throw_errno("socket(AF_UNIX)");
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ||
        errno == EAGAIN)
      throw Error("--socket " + path + ": another wisp serve listens there; not replaced");
    if (errno != ECONNREFUSED && errno != ENOENT)
      throw_errno("--socket " + path + ": checking whether the socket there is stale");
    ::unlink(path.c_str());
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  // Created 0600 (no window where others could connect), then chmod'ed in case of an ACL.
  mode_t old = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0) throw_errno("--socket " + path);
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), 128) != 0) {
    std::string msg = errno_message("--socket " + path);
    ::unlink(path.c_str());
    throw Error(msg);
  }
  return fd.release();
}

void run_serve(const ServeOptions& options, ExtraListener extra,
               const std::function<void()>& ready) {
  // Before any thread exists (the reaper's), so that every thread blocks them and only this
  // loop receives them.
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  ::signal(SIGPIPE, SIG_IGN);
  manager::open_store(/*create=*/true);
  // What a serve (or a CLI command) killed before left in the store; runtime directories of
  // dead owners go with the first clone's RuntimeDir (runtime_sweep.h).
  manager::remove_store_leftovers();
  UniqueFd listen_fd(listen_unix_socket(options.socket));
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  {
    Service service(io, options);
    api::serve::Wisp::Client wisp = make_wisp_server(service);
    Listener listener(io, listen_fd.release(), wisp);
    kj::Promise<void> accepting = listener.accept_loop().eagerlyEvaluate(
        [](kj::Exception&& e) { LOG_ERROR("serve: accept: %s", e.getDescription().cStr()); });
    kj::Promise<void> extra_listener = kj::NEVER_DONE;
    if (extra)
      extra_listener = extra(io, wisp).eagerlyEvaluate([](kj::Exception&& e) {
        LOG_ERROR("serve: HTTP gateway: %s", e.getDescription().cStr());
      });
    if (ready) ready();
    auto signalled =
        io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
    siginfo_t sig = signalled.wait(io.waitScope);
    LOG_INFO("serve: signal %d: draining (%u calls in flight, up to %lld ms)", sig.si_signo,
             service.in_flight(), static_cast<long long>(options.drain_timeout.count()));
    service.drain();
    // A second signal ends the drain at once.
    bool stop_now = false;
    auto again = io.unixEventPort.onSignal(SIGTERM)
                     .exclusiveJoin(io.unixEventPort.onSignal(SIGINT))
                     .then([&stop_now](siginfo_t) { stop_now = true; })
                     .eagerlyEvaluate(nullptr);
    uint64_t end = now_ns() + static_cast<uint64_t>(options.drain_timeout.count()) * 1000000ull;
    while (service.in_flight() > 0 && now_ns() < end && !stop_now)
      timer.afterDelay(20 * kj::MILLISECONDS).wait(io.waitScope);
    if (service.in_flight() > 0)
      LOG_WARN("serve: %u calls still in flight after the drain: cancelling them",
               service.in_flight());
    accepting = nullptr;
    extra_listener = nullptr;
    listener.close_all();
    service.sandboxes().clear();
    // Let the cancellations run their destructors (VMs handed to the reaper) before it joins.
    kj::evalLater([] {}).wait(io.waitScope);
  }
  ::unlink(options.socket.c_str());
}

}  // namespace wisp::service
