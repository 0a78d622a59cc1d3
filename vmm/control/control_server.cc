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

#include <condition_variable>
#include <mutex>
#include <thread>

#include "api/vmm.capnp.h"
#include "base/error.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace wisp {
namespace {

UniqueFd listen_unix(const std::string& path) {
  sockaddr_un addr;
  if (path.empty() || !unix_address(path, &addr))
    throw Error("--control-socket " + path + ": path empty or too long for a Unix socket");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw_errno("--control-socket " + path);
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), 8) != 0) {
    std::string msg = errno_message("--control-socket " + path);
    ::unlink(path.c_str());
    throw Error(msg);
  }
  return fd;
}

[[noreturn]] void fail(const std::string& message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

// Runs `fn` on the VMM's event loop; a wisp::Error becomes the caller's exception.
void on_loop(EventLoop& loop, const std::function<void()>& fn) {
  bool ran;
  try {
    ran = loop.run_on_loop(fn);
  } catch (const Error& e) {
    fail(e.what());
  }
  if (!ran) fail("the VM is stopping");
}

// The manager's file `received` with a request (the descriptor the RPC system got with the
// capability), copied for the call once it is known to be a regular, empty file open for
// writing: a snapshot written into anything else (a directory, a read-only or append-only
// file, old data the new pages would not all overwrite) would be wrong or fail half-way.
UniqueFd take_output_file(kj::Maybe<int> received, const char* what, const std::string& dir) {
  const std::string name = dir + ": the " + what;
  int fd = -1;
  KJ_IF_MAYBE (f, received) {
    fd = *f;
  }
  if (fd < 0) fail(name + " came without a file descriptor (the manager passes the file it made)");
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) fail(errno_message(name + ": duplicate the descriptor"));
  struct stat st;
  if (::fstat(copy.get(), &st) != 0) fail(errno_message(name + ": fstat"));
  if (!S_ISREG(st.st_mode))
    fail(name + " is not a regular file" + (S_ISDIR(st.st_mode) ? " (a directory)" : ""));
  int flags = ::fcntl(copy.get(), F_GETFL);
  if (flags < 0) fail(errno_message(name + ": F_GETFL"));
  if ((flags & O_ACCMODE) != O_WRONLY && (flags & O_ACCMODE) != O_RDWR)
    fail(name + " is not open for writing");
  if (flags & O_APPEND) fail(name + " is open for appending (the VMM writes at given offsets)");
  if (st.st_size != 0)
    fail(name + " is not empty (" + std::to_string(st.st_size) + " bytes): it must be new");
  return copy;
}

void set_report(api::SnapshotReport::Builder out, const control::SnapshotReport& r) {
  out.setId(r.id);
  out.setDiff(r.diff);
  out.setPauseMs(r.pause_ms);
  out.setStateMs(r.state_ms);
  out.setMemoryMs(r.memory_ms);
  out.setTotalMs(r.total_ms);
  out.setMemoryFileBytes(r.memory_file_bytes);
  out.setMemoryDiskBytes(r.memory_disk_bytes);
  out.setPagesWritten(r.pages_written);
  out.setPagesInLayer(r.pages_in_layer);
}

class VmmImpl final : public api::Vmm::Server {
 public:
  VmmImpl(EventLoop& loop, control::Service& service) : loop_(loop), service_(service) {}

  kj::Promise<void> ping(PingContext) override {
    on_loop(loop_, [] {});
    return kj::READY_NOW;
  }
  kj::Promise<void> pause(PauseContext) override {
    on_loop(loop_, [this] { service_.pause(); });
    return kj::READY_NOW;
  }
  kj::Promise<void> resume(ResumeContext) override {
    on_loop(loop_, [this] { service_.resume(); });
    return kj::READY_NOW;
  }
  kj::Promise<void> snapshot(SnapshotContext context) override {
    auto params = context.getParams();
    auto fds = kj::heapArrayBuilder<kj::Promise<kj::Maybe<int>>>(2);
    fds.add(params.getStateFile().getFd());
    fds.add(params.getMemoryFile().getFd());
    return kj::joinPromises(fds.finish())
        .then([this, context](kj::Array<kj::Maybe<int>> received) mutable {
          auto params = context.getParams();
          control::SnapshotRequest request{params.getDir().cStr(), params.getDiff()};
          UniqueFd state = take_output_file(received[0], "state file", request.dir);
          UniqueFd memory = take_output_file(received[1], "memory file", request.dir);
          request.state_fd = state.get();
          request.memory_fd = memory.get();
          control::SnapshotReport r;
          on_loop(loop_, [&] { r = service_.snapshot(request); });
          set_report(context.getResults().initReport(), r);
        });
  }
  kj::Promise<void> stats(StatsContext context) override {
    control::MemoryStats s;
    on_loop(loop_, [&] { s = service_.stats(); });
    auto out = context.getResults().initStats();
    out.setResidentPages(s.resident_pages);
    out.setWrittenPages(s.written_pages);
    out.setPages(s.pages);
    return kj::READY_NOW;
  }

 private:
  EventLoop& loop_;
  control::Service& service_;
};

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

  void serve(UniqueFd listen_fd, EventLoop& loop, control::Service& service);
  kj::Promise<void> accept_loop(kj::ConnectionReceiver& listener, capnp::Capability::Client& vmm,
                                kj::TaskSet& tasks);
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
                                                     capnp::Capability::Client& vmm,
                                                     kj::TaskSet& tasks) {
  return listener.accept().then([this, &listener, &vmm, &tasks](kj::Own<kj::AsyncIoStream> s) {
    if (clients < kMaxClients) {
      ++clients;
      // A Unix listener's connections are KJ's fd streams, which pass descriptors too (as
      // capnp's TwoPartyServer::listenCapStreamReceiver relies on).
      auto c = kj::heap<Connection>(s.downcast<kj::AsyncCapabilityStream>(), vmm);
      auto done = c->network.onDisconnect();
      tasks.add(done.attach(kj::mv(c), kj::defer([this] { --clients; })));
    }
    return accept_loop(listener, vmm, tasks);
  });
}

void ControlServer::Thread::serve(UniqueFd listen_fd, EventLoop& loop, control::Service& service) {
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
    LogErrors errors;
    kj::TaskSet tasks(errors);
    capnp::Capability::Client vmm = kj::heap<VmmImpl>(loop, service);
    accept_loop(*listener, vmm, tasks).exclusiveJoin(kj::mv(stopped.promise)).wait(io.waitScope);
  } catch (const kj::Exception& e) {
    LOG_ERROR("control socket stopped: %s", e.getDescription().cStr());
  }
  std::lock_guard lock(mu);
  started = true;  // also when setup failed: the owner must not wait for it
  cv.notify_all();
}

ControlServer::ControlServer(std::string path, EventLoop& loop, control::Service& service)
    : path_(std::move(path)),
      loop_(loop),
      service_(service),
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
                           hook = std::move(on_thread_start)]() mutable {
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
    t->serve(std::move(fd), loop, service);
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
