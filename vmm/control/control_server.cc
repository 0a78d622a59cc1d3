#include "vmm/control/control_server.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "api/vmm.capnp.h"
#include "base/error.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"
#include "vmm/control/control_sessions.h"

namespace wisp {
namespace {

// A socket file at `path` is replaced only when nothing listens on it any more (its VMM died
// without removing it: connect() is refused). A live one is another VM's control socket, and
// a full backlog (EAGAIN: the probe does not block) means a live one too.
void remove_stale_socket(const std::string& path, const sockaddr_un& addr) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;  // bind() says what
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) throw_errno("socket(AF_UNIX)");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ||
      errno == EAGAIN)
    throw Error("--control-socket " + path +
                ": a live socket is there (another VMM listens on it); not replaced");
  if (errno == ENOENT) return;
  if (errno != ECONNREFUSED)
    throw_errno("--control-socket " + path + ": checking whether the socket there is stale");
  ::unlink(path.c_str());
}

UniqueFd listen_unix(const std::string& path) {
  sockaddr_un addr;
  if (path.empty() || !unix_address(path, &addr))
    throw Error("--control-socket " + path + ": path empty or too long for a Unix socket");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  remove_stale_socket(path, addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw_errno("--control-socket " + path);
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), 8) != 0) {
    std::string msg = errno_message("--control-socket " + path);
    ::unlink(path.c_str());
    throw Error(msg);
  }
  return fd;
}

// True when the peer of `stream` may control this VM: root or `owner`. Logs a refusal.
bool peer_allowed(kj::AsyncIoStream& stream, uid_t owner) {
  ucred cred{};
  uint len = sizeof(cred);
  try {
    stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &len);
  } catch (const kj::Exception& e) {
    LOG_WARN("control socket: refused a connection: SO_PEERCRED: %s", e.getDescription().cStr());
    return false;
  }
  if (len == sizeof(cred) && (cred.uid == 0 || cred.uid == owner)) return true;
  LOG_WARN(
      "control socket: refused a connection from uid %u (pid %d): only uid %u and root "
      "may control this VM",
      static_cast<unsigned>(cred.uid), static_cast<int>(cred.pid), static_cast<unsigned>(owner));
  return false;
}

// One client: its stream and the RPC system on it, alive until the client disconnects.
// The stream passes descriptors (the snapshot's files), at most Vmm.maxFdsPerMessage a request.
struct Connection {
  Connection(kj::Own<kj::AsyncCapabilityStream> s, capnp::Capability::Client bootstrap)
      : stream(kj::mv(s)),
        network(*stream, api::Vmm::MAX_FDS_PER_MESSAGE, capnp::rpc::twoparty::Side::SERVER,
                reader_options()),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  static capnp::ReaderOptions reader_options() {
    capnp::ReaderOptions o;
    o.traversalLimitInWords = api::Vmm::MAX_MESSAGE_BYTES / sizeof(capnp::word);
    return o;
  }
  kj::Own<kj::AsyncCapabilityStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

}  // namespace

// The RPC thread. `stop` is fulfilled from the owner's thread to end serve().
struct ControlServer::Thread {
  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;
  std::thread thread;
  size_t clients = 0;       // RPC thread only
  std::string start_error;  // what on_thread_start threw (under mu)

  void serve(UniqueFd listen_fd, EventLoop& loop, control::Service& service, uid_t owner);
  kj::Promise<void> accept_loop(kj::ConnectionReceiver& listener, ControlSessions& sessions,
                                uid_t owner, kj::TaskSet& tasks);
};

namespace {
class LogErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    LOG_WARN("control socket: a connection failed: %s", e.getDescription().cStr());
  }
};
}  // namespace

kj::Promise<void> ControlServer::Thread::accept_loop(kj::ConnectionReceiver& listener,
                                                     ControlSessions& sessions, uid_t owner,
                                                     kj::TaskSet& tasks) {
  return listener.accept().then(
      [this, &listener, &sessions, owner, &tasks](kj::Own<kj::AsyncIoStream> s) {
        if (clients < kMaxClients && peer_allowed(*s, owner)) {
          ++clients;
          PauseHolds::ConnectionId id = 0;
          capnp::Capability::Client vmm = sessions.open(&id);
          // A Unix listener's connections are KJ's fd streams, which pass descriptors too (as
          // capnp's TwoPartyServer::listenCapStreamReceiver relies on).
          auto c = kj::heap<Connection>(s.downcast<kj::AsyncCapabilityStream>(), kj::mv(vmm));
          auto done = c->network.onDisconnect();
          tasks.add(done.attach(kj::mv(c), kj::defer([this, &sessions, id] {
                                  --clients;
                                  sessions.close(id);
                                })));
        }
        return accept_loop(listener, sessions, owner, tasks);
      });
}

void ControlServer::Thread::serve(UniqueFd listen_fd, EventLoop& loop, control::Service& service,
                                  uid_t owner) {
  try {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    auto listener = io.lowLevelProvider->wrapListenSocketFd(
        listen_fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    auto stopped = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard lock(mu);
      stop = kj::mv(stopped.fulfiller);
      started = true;
    }
    cv.notify_all();
    // Before the tasks: a connection's end (also when the tasks go) tells the sessions.
    ControlSessions sessions(
        [&loop](const std::function<void()>& fn) { return loop.run_on_loop(fn); }, service);
    LogErrors errors;
    kj::TaskSet tasks(errors);
    accept_loop(*listener, sessions, owner, tasks)
        .exclusiveJoin(kj::mv(stopped.promise))
        .wait(io.waitScope);
  } catch (const kj::Exception& e) {
    LOG_ERROR("control socket stopped: %s", e.getDescription().cStr());
  }
  std::lock_guard lock(mu);
  started = true;  // also when setup failed: the owner must not wait for it
  cv.notify_all();
}

ControlServer::ControlServer(std::string path, EventLoop& loop, control::Service& service,
                             uid_t owner)
    : path_(std::move(path)),
      loop_(loop),
      service_(service),
      owner_(owner),
      listen_fd_(listen_unix(path_)),
      thread_(std::make_unique<Thread>()) {}

void ControlServer::start(std::function<void()> on_thread_start) {
  if (thread_->thread.joinable() || !listen_fd_) throw Error("control socket: started twice");
  // The thread inherits this mask: every signal blocked, set back here once it is started.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  Thread* t = thread_.get();
  t->thread = std::thread([t, fd = std::move(listen_fd_), &loop = loop_, &service = service_,
                           owner = owner_, hook = std::move(on_thread_start)]() mutable {
    pthread_setname_np(pthread_self(), "vmm-control");
    try {
      if (hook) hook();
    } catch (const Error& e) {
      std::lock_guard lock(t->mu);
      t->start_error = e.what();
      t->started = true;
      t->cv.notify_all();
      return;
    }
    t->serve(std::move(fd), loop, service, owner);
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  std::unique_lock lock(t->mu);
  t->cv.wait(lock, [t] { return t->started; });
  if (!t->start_error.empty()) {
    std::string why = t->start_error;
    lock.unlock();
    t->thread.join();
    throw Error("control socket: " + why);
  }
}

ControlServer::~ControlServer() {
  loop_.cancel_calls();  // a call waiting for a loop that will not run it returns now
  if (thread_->thread.joinable()) {
    {
      std::unique_lock lock(thread_->mu);
      thread_->cv.wait(lock, [this] { return thread_->started; });
      if (thread_->stop) thread_->stop->fulfill();
    }
    thread_->thread.join();
  }
  ::unlink(path_.c_str());
}

}  // namespace wisp
