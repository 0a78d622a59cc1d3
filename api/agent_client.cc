#include "api/agent_client.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <thread>
#include <utility>

#include "api/agent.capnp.h"
#include "api/agent_wire.h"
#include "api/thread_io.h"
#include "api/vsock_bridge_stream.h"
#include "base/clock.h"
#include "base/unix_socket.h"

namespace wisp::client {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

kj::ArrayPtr<const capnp::byte> bytes_of(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const capnp::byte*>(s.data()), s.size());
}

std::string string_of(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

std::string string_of(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

// The fd is closed when this goes out of scope unless released.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int release() { return std::exchange(fd_, -1); }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Refuses a request the agent would reject anyway, before copying it into a message.
void check_request_size(const InvokeRequest& r) {
  uint64_t cap = max_message_bytes();
  if (r.payload.size() + (1u << 20) > cap)
    throw Error("invoke: the payload is " + std::to_string(r.payload.size()) +
                " bytes; the agent accepts messages up to " + std::to_string(cap) +
                " bytes (api/agent.capnp Agent.maxMessageBytes), so pass large inputs another way");
}

}  // namespace

void fill_handler(api::Handler::Builder b, const Handler& h) {
  b.setName(h.name);
  auto argv = b.initArgv(static_cast<unsigned>(h.argv.size()));
  for (size_t i = 0; i < h.argv.size(); ++i) argv.set(static_cast<unsigned>(i), h.argv[i]);
  auto env = b.initEnv(static_cast<unsigned>(h.env.size()));
  for (size_t i = 0; i < h.env.size(); ++i) env.set(static_cast<unsigned>(i), h.env[i]);
  auto l = b.initLimits();
  l.setMemoryBytes(h.limits.memory_bytes);
  l.setPids(h.limits.pids);
  l.setCpuTimeMs(h.limits.cpu_time_ms);
  l.setMaxOutputBytes(h.limits.max_output_bytes);
  l.setOpenFiles(h.limits.open_files);
  b.setNetwork(h.network);
  b.setRootDevice(h.root_device);
  b.setCwd(h.cwd);
  b.setUid(h.uid);
  b.setGid(h.gid);
  auto groups = b.initAdditionalGids(static_cast<unsigned>(h.additional_gids.size()));
  for (size_t i = 0; i < h.additional_gids.size(); ++i)
    groups.set(static_cast<unsigned>(i), h.additional_gids[i]);
  b.setTerminal(h.terminal);
  b.setConsoleWidth(h.console_width);
  b.setConsoleHeight(h.console_height);
}

namespace {

// One invoke request on the wire (invoke_many, resumed_then_invoke).
void fill_invoke(api::InvokeRequest::Builder b, const InvokeRequest& r) {
  b.setMode(r.mode == InvokeMode::kWorker ? api::InvokeRequest::Mode::WORKER
                                          : api::InvokeRequest::Mode::EXEC);
  fill_handler(b.initHandler(), r.handler);
  b.setPayload(bytes_of(r.payload));
  b.setTimeoutMs(r.timeout_ms);
}

// Between two connection attempts: gives up when the VMM is gone, else waits a little. The
// guest is booting or resuming: a refused attempt costs the VMM one RST, so poll briskly.
void before_next_attempt(const ConnectOptions& o, uint32_t port, const std::string& why) {
  if (o.keep_trying && !o.keep_trying())
    throw AgentError(AgentError::Kind::kUnreachable,
                     "the VM stopped before its agent answered on vsock port " +
                         std::to_string(port) + " (last attempt: " + why + ")");
  std::this_thread::sleep_for(milliseconds(5));
}

AgentError no_agent(const ConnectOptions& o, uint32_t port, const std::string& why) {
  return AgentError(AgentError::Kind::kUnreachable,
                    "no guest agent answered on vsock port " + std::to_string(port) + " via " +
                        (o.vsock_cid ? "vsock CID " + std::to_string(o.vsock_cid) : o.uds_path) +
                        " within " + std::to_string(o.deadline.count()) +
                        " ms (last attempt: " + why +
                        "). Does the guest run wisp-agent (build/guest/agent-initramfs.cpio.gz)?");
}

}  // namespace

InvokeResult convert(api::InvokeResult::Reader r) {
  InvokeResult out = invoke_outcome(r);
  out.error = string_of(r.getError());
  out.preforked = r.getPreforked();
  return out;
}

uint32_t agent_port() { return api::Agent::PORT; }
uint32_t protocol_version() { return api::PROTOCOL_VERSION; }
uint64_t max_message_bytes() { return api::Agent::MAX_MESSAGE_BYTES; }
uint64_t max_file_bytes() { return api::Agent::MAX_FILE_BYTES; }

int vsock_uds_send_connect(const std::string& uds_path, uint32_t port, std::string* why) {
  sockaddr_un addr;
  if (!unix_address(uds_path, &addr))
    throw Error("vsock socket path '" + uds_path + "' is too long for a Unix socket");
  FdGuard fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw_errno("socket(AF_UNIX)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    // Not there yet (the VMM has not bound it) or not listening: the caller retries.
    *why = errno_message("connect to " + uds_path);
    return -1;
  }
  std::string line = "CONNECT " + std::to_string(port) + "\n";
  if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(line.size())) {
    *why = errno_message("send CONNECT to " + uds_path);
    return -1;
  }
  return fd.release();
}

int vsock_uds_connect(const std::string& uds_path, uint32_t port, milliseconds timeout,
                      std::string* why) {
  FdGuard fd(vsock_uds_send_connect(uds_path, port, why));
  if (fd.get() < 0) return -1;
  // Whatever follows the reply line is already the guest's stream: each read takes what it
  // peeked up to the newline, no further (one read for the usual one-piece reply, where byte
  // by byte took a system call per character on every connection).
  std::string reply;
  auto end = Clock::now() + timeout;
  while (reply.empty() || reply.back() != '\n') {
    auto left = std::chrono::duration_cast<milliseconds>(end - Clock::now()).count();
    pollfd p{fd.get(), POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0) {
      *why = "no reply to CONNECT " + std::to_string(port) + " within " +
             std::to_string(timeout.count()) + " ms";
      return -1;
    }
    char buf[kBridgeReplyMaxBytes + 1];
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *why = "nothing listens on guest vsock port " + std::to_string(port) + " yet";
      return -1;
    }
    bool ended = false;
    size_t line = bridge_reply_part(buf, static_cast<size_t>(n), &ended);
    ssize_t got;
    while ((got = ::recv(fd.get(), buf, line, 0)) < 0 && errno == EINTR) {
    }
    if (got != static_cast<ssize_t>(line)) {  // it had them: only a reset takes them away
      *why = errno_message("read the reply to CONNECT from " + uds_path);
      return -1;
    }
    reply.append(buf, line);
    if (reply.size() > kBridgeReplyMaxBytes) break;
  }
  if (!bridge_reply_accepted(reply))
    throw Error("vsock bridge at " + uds_path + " answered CONNECT with '" +
                reply.substr(0, kBridgeReplyMaxBytes) +
                "' instead of 'OK <port>': is it a wisp VM's --vsock-uds?");
  return fd.release();
}

int vsock_cid_connect(uint32_t cid, uint32_t port, milliseconds timeout, std::string* why) {
  std::string peer = "vsock CID " + std::to_string(cid) + " port " + std::to_string(port);
  FdGuard fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0)
    throw_errno("socket(AF_VSOCK) (is the vsock module loaded? modprobe vhost_vsock)");
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      // ENODEV/EHOSTUNREACH: no VM with that CID yet; ECONNRESET: nothing listens yet.
      *why = errno_message("connect to " + peer);
      return -1;
    }
    pollfd p{fd.get(), POLLOUT, 0};
    int n;
    do {
      n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      *why = "no answer from " + peer + " within " + std::to_string(timeout.count()) + " ms";
      return -1;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      errno = err;
      *why = errno_message("connect to " + peer);
      return -1;
    }
  }
  return fd.release();
}

void parse_agent_address(const std::string& address, ConnectOptions* options) {
  constexpr std::string_view kPrefix = "vsock:";
  if (!address.starts_with(kPrefix)) {
    options->uds_path = address;
    options->vsock_cid = 0;
    return;
  }
  std::string digits = address.substr(kPrefix.size());
  unsigned long long cid = 0;
  bool ok = !digits.empty() && digits.size() <= 10;
  for (char c : digits) {
    if (c < '0' || c > '9') ok = false;
    if (ok) cid = cid * 10 + static_cast<unsigned>(c - '0');
  }
  // 0 is the hypervisor, 1 local loopback, 2 the host; -1 is VMADDR_CID_ANY.
  if (!ok || cid < 3 || cid >= VMADDR_CID_ANY)
    throw Error("'" + address + "' is not a guest vsock address: expected vsock:CID with CID " +
                "a guest's context id (3 to 4294967294)");
  options->vsock_cid = static_cast<uint32_t>(cid);
  options->uds_path.clear();
}

namespace {

class IgnoreErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}
};

// One exec_stream call's state, shared by the call and the OutputSink the agent holds (which
// may outlive the call: late chunks then find `active` false and are dropped).
struct StreamState {
  // The callbacks' handle. A separate object: StreamState's KJ members may throw from their
  // destructors, which an override of StreamControl's destructor must not.
  struct Control final : public StreamControl {
    explicit Control(StreamState& state) : s(state) {}
    void write(const std::string& data) override { s.write(data); }
    void close_stdin() override { s.close_stdin(); }
    void signal(int sig) override { s.signal(sig); }
    void resize(uint16_t width, uint16_t height) override { s.resize(width, height); }
    void drop() override { s.drop(); }
    StreamState& s;
  };

  StreamCallback on_stdout, on_stderr;
  api::Process::Client process = nullptr;
  bool active = true;
  bool released = false;  // `process` was let go of: control calls do nothing
  std::string failure;    // a callback threw, or a signal was refused
  kj::Own<kj::PromiseFulfiller<void>> dropped;
  IgnoreErrors ignore;
  kj::Own<kj::TaskSet> requests = kj::heap<kj::TaskSet>(ignore);
  Control control{*this};

  void write(const std::string& data) {
    if (!active || released) return;
    auto r = process.writeRequest();
    r.setData(bytes_of(data));
    requests->add(r.send().ignoreResult());
  }
  void close_stdin() {
    if (active && !released) requests->add(process.closeStdinRequest().send().ignoreResult());
  }
  void signal(int sig) {
    if (!active || released) return;
    auto r = process.signalRequest();
    r.setSignal(sig);
    requests->add(r.send().ignoreResult().catch_([this](kj::Exception&& e) {
      if (failure.empty()) failure = std::string("signal: ") + e.getDescription().cStr();
    }));
  }
  void resize(uint16_t width, uint16_t height) {
    if (!active || released) return;
    auto r = process.resizeRequest();
    r.setWidth(width);
    r.setHeight(height);
    requests->add(r.send().ignoreResult().catch_([this](kj::Exception&& e) {
      if (failure.empty()) failure = std::string("resize: ") + e.getDescription().cStr();
    }));
  }
  void drop() {
    if (active && dropped) dropped->fulfill();
  }
  // Lets go of the Process: the capability and any call still waiting on it (a write the
  // command does not read), so nothing keeps the agent's side alive.
  void release() {
    released = true;
    requests = kj::heap<kj::TaskSet>(ignore);
    process = nullptr;
  }
  void deliver(bool is_stdout, capnp::Data::Reader data) {
    auto& callback = is_stdout ? on_stdout : on_stderr;
    if (!active || !callback) return;
    try {
      callback(std::string(reinterpret_cast<const char*>(data.begin()), data.size()), control);
    } catch (const std::exception& e) {
      if (failure.empty()) failure = std::string("an output callback threw: ") + e.what();
      throw;  // fails the stream: the agent drops the rest of the output
    }
  }
};

class OutputSinkImpl final : public api::OutputSink::Server {
 public:
  explicit OutputSinkImpl(std::shared_ptr<StreamState> state) : state_(std::move(state)) {}

 protected:
  kj::Promise<void> stdout(StdoutContext context) override {
    state_->deliver(true, context.getParams().getData());
    return kj::READY_NOW;
  }
  kj::Promise<void> stderr(StderrContext context) override {
    state_->deliver(false, context.getParams().getData());
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<StreamState> state_;
};

// Receives a checkpoint's archive (checkpointWorker's sink).
class CriuSinkImpl final : public api::CriuImageSink::Server {
 public:
  explicit CriuSinkImpl(const std::function<void(const std::string&)>& on_chunk)
      : on_chunk_(on_chunk) {}
  kj::Promise<void> write(WriteContext context) override {
    auto d = context.getParams().getData();
    on_chunk_(std::string(reinterpret_cast<const char*>(d.begin()), d.size()));
    return kj::READY_NOW;
  }
  kj::Promise<void> done(DoneContext) override { return kj::READY_NOW; }

 private:
  const std::function<void(const std::string&)>& on_chunk_;
};

}  // namespace

struct AgentClient::Impl {
  // Declaration order is teardown order reversed: the capability and RPC system go before the
  // stream they write to, and the event loop goes last.
  std::shared_ptr<ThreadIo> thread = thread_io();
  kj::AsyncIoContext& io = thread->io;
  kj::Own<kj::AsyncIoStream> stream;
  UnansweredStream* unanswered = nullptr;  // the stream, if made by connect_with
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  api::Agent::Client agent = nullptr;
  milliseconds grace{10000};

  // Runs the loop until `p` resolves, at most `limit`; maps KJ failures to AgentError.
  template <typename T>
  T wait(kj::Promise<T>&& p, milliseconds limit, const char* what) {
    auto timed = io.provider->getTimer().timeoutAfter(
        static_cast<int64_t>(limit.count()) * kj::MILLISECONDS, kj::mv(p));
    try {
      return timed.wait(io.waitScope);
    } catch (const kj::Exception& e) {
      std::string desc(e.getDescription().cStr());
      if (e.getType() == kj::Exception::Type::DISCONNECTED)
        throw AgentError(
            AgentError::Kind::kDisconnected,
            std::string("agent ") + what +
                ": the connection to the guest agent dropped (did the VM stop?): " + desc);
      if (e.getType() == kj::Exception::Type::OVERLOADED && desc == "operation timed out")
        throw AgentError(AgentError::Kind::kTimeout,
                         std::string("agent ") + what + ": no answer from the guest agent within " +
                             std::to_string(limit.count()) + " ms");
      throw AgentError(AgentError::Kind::kRemote, std::string("agent ") + what + " failed: " + desc,
                       e.getType() == kj::Exception::Type::UNIMPLEMENTED);
    }
  }
};

AgentClient::AgentClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AgentClient::~AgentClient() = default;

std::unique_ptr<AgentClient> AgentClient::from_fd(int fd, milliseconds call_grace) {
  auto impl = std::make_unique<Impl>();
  impl->stream =
      impl->io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  return on_stream(std::move(impl), call_grace);
}

std::unique_ptr<AgentClient> AgentClient::on_stream(std::unique_ptr<Impl> impl,
                                                    milliseconds call_grace) {
  impl->grace = call_grace;
  // Bounded reads: a lying agent cannot make the host allocate or traverse more than the
  // protocol's message cap.
  capnp::ReaderOptions opts;
  opts.traversalLimitInWords = max_message_bytes() / sizeof(capnp::word);
  opts.nestingLimit = 32;
  impl->network =
      kj::heap<capnp::TwoPartyVatNetwork>(*impl->stream, capnp::rpc::twoparty::Side::CLIENT, opts);
  impl->rpc =
      kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*impl->network));
  capnp::word scratch[4];
  std::memset(scratch, 0, sizeof(scratch));
  capnp::MallocMessageBuilder message(scratch);
  auto server_id = message.getRoot<capnp::rpc::twoparty::VatId>();
  server_id.setSide(capnp::rpc::twoparty::Side::SERVER);
  impl->agent = impl->rpc->bootstrap(server_id).castAs<api::Agent>();
  return std::unique_ptr<AgentClient>(new AgentClient(std::move(impl)));
}

std::unique_ptr<AgentClient> AgentClient::connect(const ConnectOptions& o) {
  uint32_t port = o.port ? o.port : agent_port();
  auto deadline = Clock::now() + o.deadline;
  std::string why = "not tried";
  while (true) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    auto attempt = std::min(left, milliseconds(2000));
    int fd = o.vsock_cid ? vsock_cid_connect(o.vsock_cid, port, attempt, &why)
                         : vsock_uds_connect(o.uds_path, port, attempt, &why);
    if (fd >= 0) {
      auto client = from_fd(fd, o.call_grace);
      if (!o.confirm) return client;
      try {
        client->ping();
        return client;
      } catch (const AgentError& e) {
        if (e.kind() != AgentError::Kind::kDisconnected) throw;
        why = e.what();
      }
    }
    before_next_attempt(o, port, why);
  }
  throw no_agent(o, port, why);
}

std::unique_ptr<AgentClient> AgentClient::connect_with(
    const ConnectOptions& o, const std::function<void(AgentClient&)>& first_calls) {
  if (o.vsock_cid) throw Error("agent connect_with: only through a VMM's vsock bridge (uds_path)");
  uint32_t port = o.port ? o.port : agent_port();
  auto deadline = Clock::now() + o.deadline;
  std::string why = "not tried";
  while (Clock::now() < deadline) {
    int fd = vsock_uds_send_connect(o.uds_path, port, &why);
    if (fd >= 0) {
      auto impl = std::make_unique<Impl>();
      auto raw =
          impl->io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
      auto stream = kj::heap<UnansweredStream>(kj::mv(raw), o.uds_path);
      impl->unanswered = stream.get();
      impl->stream = kj::mv(stream);
      auto client = on_stream(std::move(impl), o.call_grace);
      try {
        first_calls(*client);
        return client;
      } catch (const AgentError& e) {
        // Refused: the guest saw none of the calls, so making them again repeats nothing. The
        // calls may have failed before the bridge's answer was read (a write into the closed
        // connection): wait for it.
        if (!client->refused()) throw;
        why = e.what();
      }
    }
    before_next_attempt(o, port, why);
  }
  throw no_agent(o, port, why);
}

bool AgentClient::refused() {
  if (!impl_->unanswered) return false;
  auto answer = impl_->unanswered->accepted().then([] { return false; },
                                                   [](kj::Exception&&) { return true; });
  return impl_->wait(kj::mv(answer), impl_->grace, "connect");
}

AgentInfo AgentClient::ping() {
  auto resp = impl_->wait(
      impl_->agent.pingRequest().send().then([](capnp::Response<api::Agent::PingResults>&& r) {
        auto i = r.getInfo();
        AgentInfo info;
        info.protocol_version = i.getProtocolVersion();
        info.agent_version = string_of(i.getAgentVersion());
        info.boot_id = string_of(i.getBootId());
        info.uptime_ns = i.getUptimeNs();
        for (auto w : i.getWorkers()) info.workers.push_back(string_of(w));
        info.terminals = i.getTerminals();
        return info;
      }),
      impl_->grace, "ping");
  return resp;
}

InvokeResult AgentClient::invoke(const InvokeRequest& request) {
  return std::move(invoke_many({request}).front());
}

std::vector<InvokeResult> AgentClient::invoke_many(const std::vector<InvokeRequest>& requests) {
  uint64_t longest = 0;
  kj::Vector<kj::Promise<InvokeResult>> calls;
  for (const auto& r : requests) {
    check_request_size(r);
    longest = std::max(longest, r.timeout_ms);
    auto req = impl_->agent.invokeRequest();
    fill_invoke(req.initRequest(), r);
    calls.add(req.send().then([](capnp::Response<api::Agent::InvokeResults>&& resp) {
      return convert(resp.getResult());
    }));
  }
  // The agent enforces each timeout itself; the grace covers its kill, reap and reply.
  auto all = impl_->wait(kj::joinPromises(calls.releaseAsArray()),
                         milliseconds(longest) + impl_->grace, "invoke");
  return std::vector<InvokeResult>(std::make_move_iterator(all.begin()),
                                   std::make_move_iterator(all.end()));
}

void AgentClient::start_worker(const Handler& handler) {
  auto req = impl_->agent.startWorkerRequest();
  fill_handler(req.initHandler(), handler);
  impl_->wait(req.send().ignoreResult(), impl_->grace, "startWorker");
}

void AgentClient::stop_worker(const std::string& name) {
  auto req = impl_->agent.stopWorkerRequest();
  req.setName(name);
  impl_->wait(req.send().ignoreResult(), impl_->grace, "stopWorker");
}

void AgentClient::prepare_snapshot() {
  impl_->wait(impl_->agent.prepareSnapshotRequest().send().ignoreResult(), impl_->grace,
              "prepareSnapshot");
}

void AgentClient::prepare_snapshot(const Handler& spare) {
  auto req = impl_->agent.prepareSnapshotRequest();
  fill_handler(req.initSpare(), spare);
  impl_->wait(req.send().ignoreResult(), impl_->grace, "prepareSnapshot");
}

void AgentClient::resumed(const std::string& entropy, int64_t wall_clock_unix_ns) {
  auto req = impl_->agent.resumedRequest();
  req.setEntropy(bytes_of(entropy));
  req.setWallClockUnixNs(wall_clock_unix_ns);
  impl_->wait(req.send().ignoreResult(), impl_->grace, "resumed");
}

InvokeResult AgentClient::resumed_then_invoke(const std::string& entropy,
                                              int64_t wall_clock_unix_ns, const InvokeRequest& r,
                                              uint64_t* reseeded_ns) {
  check_request_size(r);
  auto reseed = impl_->agent.resumedRequest();
  reseed.setEntropy(bytes_of(entropy));
  reseed.setWallClockUnixNs(wall_clock_unix_ns);
  auto reseeded = reseed.send()
                      .then([reseeded_ns](auto&&) {
                        if (reseeded_ns) *reseeded_ns = now_ns();
                      })
                      .catch_([](kj::Exception&& e) {
                        kj::throwFatalException(kj::Exception(
                            e.getType(), __FILE__, __LINE__,
                            kj::str("the reseed (agent.resumed) failed, so the result is dropped: ",
                                    e.getDescription())));
                      });
  auto req = impl_->agent.invokeRequest();
  fill_invoke(req.initRequest(), r);
  auto invoked = req.send().then(
      [](capnp::Response<api::Agent::InvokeResults>&& resp) { return convert(resp.getResult()); });
  return impl_->wait(
      reseeded.then([invoked = kj::mv(invoked)]() mutable { return kj::mv(invoked); }),
      milliseconds(r.timeout_ms) + impl_->grace, "invoke");
}

InvokeResult AgentClient::exec_stream(const ExecStreamRequest& r) {
  if (r.stdin_data.size() + (1u << 20) > max_message_bytes())
    throw Error("execStream: stdin_data is " + std::to_string(r.stdin_data.size()) +
                " bytes; write it in pieces under " + std::to_string(max_message_bytes()) +
                " bytes (Agent.maxMessageBytes)");
  // An older agent ignores Handler.terminal and would run the command on pipes.
  if (r.handler.terminal && !ping().terminals)
    throw AgentError(AgentError::Kind::kRemote,
                     "agent execStream: this guest's wisp-agent predates terminals "
                     "(Handler.terminal); rebuild the guest image or template");
  auto state = std::make_shared<StreamState>();
  state->on_stdout = r.on_stdout;
  state->on_stderr = r.on_stderr;
  auto dropped = kj::newPromiseAndFulfiller<void>();
  state->dropped = kj::mv(dropped.fulfiller);
  // Whatever way this returns, the Process is released (the agent kills a command still
  // running) and late chunks are ignored.
  struct Release {
    StreamState& s;
    ~Release() {
      s.active = false;
      s.release();
    }
  } release{*state};

  auto req = impl_->agent.execStreamRequest();
  fill_handler(req.initHandler(), r.handler);
  req.setTimeoutMs(r.timeout_ms);
  req.setOutput(kj::heap<OutputSinkImpl>(state));
  // Pipelined: write, closeStdin and wait go out before execStream's answer is back.
  state->process = req.send().getProcess();
  if (!r.stdin_data.empty()) state->write(r.stdin_data);
  if (r.close_stdin) state->close_stdin();
  auto waited = state->process.waitRequest().send().then(
      [](capnp::Response<api::Process::WaitResults>&& resp) { return convert(resp.getResult()); });
  auto either = waited.exclusiveJoin(dropped.promise.then([]() {
    InvokeResult out;
    out.error = "dropped by the caller";
    return out;
  }));
  InvokeResult result =
      impl_->wait(kj::mv(either), milliseconds(r.timeout_ms) + impl_->grace, "execStream");
  state->release();
  // A round trip behind everything so far: the agent sent every chunk before wait's answer,
  // but this loop may not have delivered them all yet; and a dropped Process's release must
  // reach the agent (which then kills the command) before this returns.
  impl_->wait(impl_->agent.pingRequest().send().ignoreResult(), impl_->grace, "execStream");
  if (!state->failure.empty())
    throw AgentError(AgentError::Kind::kRemote, "agent execStream: " + state->failure);
  return result;
}

InvokeResult AgentClient::exec_stream(const Handler& handler, uint64_t timeout_ms,
                                      const std::string& stdin_data,
                                      std::function<void(const std::string&)> on_stdout,
                                      std::function<void(const std::string&)> on_stderr) {
  ExecStreamRequest r;
  r.handler = handler;
  r.timeout_ms = timeout_ms;
  r.stdin_data = stdin_data;
  if (on_stdout) r.on_stdout = [&](const std::string& c, StreamControl&) { on_stdout(c); };
  if (on_stderr) r.on_stderr = [&](const std::string& c, StreamControl&) { on_stderr(c); };
  return exec_stream(r);
}

namespace {

// Text cannot carry a NUL byte intact: refuse it here with the reason rather than send a cut path.
void check_scratch_path(const std::string& path, const char* what) {
  if (path.find('\0') != std::string::npos)
    throw Error(std::string(what) + ": the path contains a NUL byte");
}

// A file call moves up to Agent.maxFileBytes through the VM's vsock; under emulation that
// takes far longer than the usual grace, so allow ~256 KiB/s on top of it.
milliseconds transfer_allowance(uint64_t bytes) { return milliseconds(bytes / 256); }

}  // namespace

void AgentClient::put_file(const std::string& path, const std::string& data, uint32_t mode) {
  check_scratch_path(path, "putFile");
  // The size cap is the agent's to enforce (Agent.maxFileBytes); a message that large fits.
  auto req = impl_->agent.putFileRequest();
  req.setPath(path);
  req.setData(bytes_of(data));
  req.setMode(mode);
  impl_->wait(req.send().ignoreResult(), impl_->grace + transfer_allowance(data.size()), "putFile");
}

std::string AgentClient::get_file(const std::string& path) {
  check_scratch_path(path, "getFile");
  auto req = impl_->agent.getFileRequest();
  req.setPath(path);
  return impl_->wait(req.send().then([](capnp::Response<api::Agent::GetFileResults>&& resp) {
    return string_of(resp.getData());
  }),
                     impl_->grace + transfer_allowance(max_file_bytes()), "getFile");
}

void AgentClient::shutdown() {
  try {
    impl_->wait(impl_->agent.shutdownRequest().send().ignoreResult(), impl_->grace, "shutdown");
  } catch (const AgentError& e) {
    if (e.kind() != AgentError::Kind::kDisconnected) throw;
  }
}

AgentClient::CriuCheck AgentClient::criu_check() {
  auto req = impl_->agent.criuCheckRequest();
  return impl_->wait(req.send().then([](capnp::Response<api::Agent::CriuCheckResults>&& resp) {
    auto r = resp.getResult();
    CriuCheck c;
    c.passed = r.getPassed();
    c.output = r.getOutput();
    c.version = r.getCriuVersion();
    return c;
  }),
                     impl_->grace + milliseconds(60000), "criuCheck");
}

AgentClient::CriuDump AgentClient::checkpoint_worker(
    const std::string& name, uint64_t max_bytes,
    const std::function<void(const std::string&)>& on_chunk) {
  auto req = impl_->agent.checkpointWorkerRequest();
  req.setName(name);
  req.setMaxBytes(max_bytes);
  req.setSink(kj::heap<CriuSinkImpl>(on_chunk));
  // A dump of a large worker takes a while in a nested guest: allow for its size.
  uint64_t cap = max_bytes == 0 ? api::Agent::MAX_CRIU_IMAGE_BYTES : max_bytes;
  return impl_->wait(
      req.send().then([](capnp::Response<api::Agent::CheckpointWorkerResults>&& resp) {
        auto i = resp.getInfo();
        CriuDump d;
        d.image_bytes = i.getImageBytes();
        d.files = i.getFiles();
        d.dump_ns = i.getDumpNs();
        d.send_ns = i.getSendNs();
        return d;
      }),
      impl_->grace + milliseconds(120000) + transfer_allowance(cap), "checkpointWorker");
}

AgentClient::CriuRestore AgentClient::restore_worker(
    const Handler& handler, const std::function<std::string()>& next_chunk) {
  auto req = impl_->agent.restoreWorkerRequest();
  fill_handler(req.initHandler(), handler);
  auto upload =
      impl_->wait(req.send().then([](capnp::Response<api::Agent::RestoreWorkerResults>&& resp) {
        return resp.getUpload();
      }),
                  impl_->grace, "restoreWorker");
  CriuRestore r;
  auto t0 = std::chrono::steady_clock::now();
  uint64_t sent = 0;
  for (;;) {
    std::string chunk = next_chunk();
    if (chunk.empty()) break;
    sent += chunk.size();
    auto w = upload.writeRequest();
    w.setData(bytes_of(chunk));
    impl_->wait(w.send(), impl_->grace + transfer_allowance(chunk.size()), "restoreWorker upload");
  }
  r.upload_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  auto done = upload.doneRequest();
  auto times = impl_->wait(
      done.send().then([](capnp::Response<api::CriuImageUpload::DoneResults>&& resp) {
        return std::make_pair(resp.getUnpackNs(), resp.getRestoreNs());
      }),
      impl_->grace + milliseconds(120000) + transfer_allowance(sent), "restoreWorker done");
  r.unpack_ns = times.first;
  r.restore_ns = times.second;
  return r;
}

AgentClient::CriuDriveRestore AgentClient::restore_worker_from_drive(const Handler& handler,
                                                                     const std::string& device) {
  auto req = impl_->agent.restoreWorkerFromDriveRequest();
  fill_handler(req.initHandler(), handler);
  req.setDevice(device);
  return impl_->wait(
      req.send().then([](capnp::Response<api::Agent::RestoreWorkerFromDriveResults>&& resp) {
        CriuDriveRestore r;
        r.mount_ns = resp.getMountNs();
        r.restore_ns = resp.getRestoreNs();
        return r;
      }),
      impl_->grace + milliseconds(120000), "restoreWorkerFromDrive");
}

}  // namespace wisp::client
