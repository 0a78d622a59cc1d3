#include "cli/serve_client.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "api/agent_wire.h"
#include "api/thread_io.h"
#include "api/wisp.capnp.h"
#include "base/exit_codes.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace wisp::cli {
namespace {

using std::chrono::milliseconds;

// How long past a call's own limits the client waits before it gives up on serve: serve
// enforces the limits itself; this only keeps a wedged serve from hanging the CLI forever.
constexpr uint64_t kCallGraceMs = 60000;
// Sandbox.snapshot has no limit of its own: a snapshot of a large guest on a slow disk.
constexpr uint64_t kSnapshotWaitMs = 10 * kCallGraceMs;

kj::ArrayPtr<const capnp::byte> bytes_of(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const capnp::byte*>(s.data()), s.size());
}
std::string string_of(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

template <typename List>
std::vector<std::string> strings_of(List list) {
  std::vector<std::string> out;
  for (auto s : list) out.push_back(string_of(s));
  return out;
}

void set_list(capnp::List<capnp::Text>::Builder b, const std::vector<std::string>& v) {
  for (size_t i = 0; i < v.size(); ++i) b.set(static_cast<unsigned>(i), v[i]);
}

// serve's message without the RPC layer's "remote exception: " prefix, and the schema's word
// it starts with ("" when it starts with none).
std::pair<std::string, std::string> describe(const kj::Exception& e) {
  std::string desc(e.getDescription().cStr());
  static constexpr std::string_view kRemote = "remote exception: ";
  while (desc.starts_with(kRemote)) desc.erase(0, kRemote.size());
  for (const char* word :
       {"not-found", "bad-request", "overloaded", "draining", "vm-failed", "too-large"}) {
    if (desc.starts_with(std::string(word) + ":")) return {word, desc};
  }
  return {"", desc};
}

client::InvokeResult convert(api::serve::InvokeResponse::Reader r) {
  return client::invoke_outcome(r);
}

manager::TemplateInfo convert(api::serve::TemplateInfo::Reader t) {
  manager::TemplateInfo out;
  out.name = string_of(t.getName());
  out.mode = string_of(t.getMode());
  out.argv = strings_of(t.getArgv());
  out.env = strings_of(t.getEnv());
  out.drives = strings_of(t.getDrives());
  out.mem_mib = t.getMemMib();
  out.vcpus = t.getVcpus();
  out.guest = string_of(t.getGuest());
  out.parent = string_of(t.getParent());
  out.created_unix = t.getCreatedUnix();
  out.memory_file_bytes = t.getMemoryFileBytes();
  out.memory_disk_bytes = t.getMemoryDiskBytes();
  out.snapshot_ms = t.getSnapshotMs();
  return out;
}

SandboxInfo convert(api::serve::SandboxInfo::Reader s) {
  SandboxInfo out;
  out.id = string_of(s.getId());
  out.template_name = string_of(s.getTemplate());
  out.state = string_of(s.getState());
  out.created_unix_ms = s.getCreatedUnixMs();
  out.expires_unix_ms = s.getExpiresUnixMs();
  out.mem_mib = s.getMemMib();
  out.invocations = s.getInvocations();
  return out;
}

// "PATH[,ro]" with PATH made absolute.
std::string absolute_drive(const std::string& drive) {
  size_t comma = drive.find(',');
  if (comma == std::string::npos) return absolute_path(drive);
  return absolute_path(drive.substr(0, comma)) + drive.substr(comma);
}

std::string absolute_or_empty(const std::string& path) {
  return path.empty() ? path : absolute_path(path);
}

class ProgressPrinter final : public api::serve::ProgressSink::Server {
 public:
  explicit ProgressPrinter(std::function<void(const std::string&)> print)
      : print_(std::move(print)) {}
  kj::Promise<void> event(EventContext context) override {
    if (print_) print_(string_of(context.getParams().getMessage()));
    return kj::READY_NOW;
  }
  kj::Promise<void> done(DoneContext) override { return kj::READY_NOW; }

 private:
  std::function<void(const std::string&)> print_;
};

// The guest's output, written where the command's own stdout and stderr go as it arrives.
class OutputWriter final : public api::serve::OutputSink::Server {
 public:
  OutputWriter(int out_fd, int err_fd) : out_fd_(out_fd), err_fd_(err_fd) {}
  kj::Promise<void> stdout(StdoutContext context) override {
    write(out_fd_, context.getParams().getData(), "stdout");
    return kj::READY_NOW;
  }
  kj::Promise<void> stderr(StderrContext context) override {
    write(err_fd_, context.getParams().getData(), "stderr");
    return kj::READY_NOW;
  }

 private:
  static void write(int fd, capnp::Data::Reader data, const char* what) {
    if (!write_all(fd, std::span<const uint8_t>(data.begin(), data.size())))
      KJ_FAIL_REQUIRE("writing the command's output failed", what, strerror(errno));
  }
  int out_fd_, err_fd_;
};

// Copies `in_fd` into a pipe on a detached thread (blocking reads work on anything: a
// terminal, a file, /dev/null; epoll takes none of those), so the event loop reads the pipe.
// The thread owns only the write end: when the loop is gone, its write fails and it ends.
int start_stdin_pipe(int in_fd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2 for stdin");
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  std::thread([in_fd, w = fds[1]]() {
    char buf[65536];
    while (true) {
      ssize_t n = ::read(in_fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (!write_all(w, std::string(buf, static_cast<size_t>(n)))) break;
    }
    ::close(w);
  }).detach();
  return fds[0];
}

kj::Promise<void> pump_stdin(kj::AsyncInputStream& in, api::serve::Process::Client process,
                             kj::ArrayPtr<capnp::byte> buffer) {
  return in.tryRead(buffer.begin(), 1, buffer.size())
      .then([&in, process, buffer](size_t n) mutable -> kj::Promise<void> {
        if (n == 0) return process.closeStdinRequest().send().ignoreResult();
        auto req = process.writeRequest();
        req.setData(buffer.slice(0, n));
        return req.send().ignoreResult().then(
            [&in, process, buffer]() mutable { return pump_stdin(in, kj::mv(process), buffer); });
      });
}

}  // namespace

std::string server_socket(const std::string& option) {
  if (!option.empty()) return option;
  const char* env = std::getenv("WISP_SERVER");
  return env ? env : "";
}

void add_server_option(OptionParser& parser, std::string* out) { parser.text("server", out); }

int serve_error_status(const char* command, const ServeError& e) {
  std::fprintf(stderr, "%s: %s\n", command, e.what());
  return e.kind() == "vm-failed" ? kExitVmFailed : kExitError;
}

struct ServeClient::Impl {
  // Declaration order is teardown order reversed: capabilities and the RPC system go before
  // the stream, the loop last.
  std::shared_ptr<client::ThreadIo> thread = client::thread_io();
  kj::AsyncIoContext& io = thread->io;
  std::string path;
  UniqueFd cancel_fd;
  kj::Own<kj::UnixEventPort::FdObserver> cancel_observer;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  api::serve::Wisp::Client wisp = nullptr;
  kj::Maybe<kj::ForkedPromise<uint32_t>> version;
  bool cancelled = false;

  // Runs the loop until `p` resolves, at most `limit_ms`, or until cancel_fd is readable.
  // Maps KJ's failures to ServeError and ServeCancelled.
  template <typename T>
  T wait(kj::Promise<T>&& p, uint64_t limit_ms, const std::string& what) {
    kj::Promise<T> raced = io.provider->getTimer().timeoutAfter(
        static_cast<int64_t>(limit_ms) * kj::MILLISECONDS, kj::mv(p));
    if (cancel_observer)
      raced = raced.exclusiveJoin(cancel_observer->whenBecomesReadable().then([this]() -> T {
        cancelled = true;
        kj::throwFatalException(KJ_EXCEPTION(FAILED, "cancelled"));
      }));
    try {
      return raced.wait(io.waitScope);
    } catch (const kj::Exception& e) {
      if (cancelled) {
        // Let the dropped call's Finish message go out before the caller moves on.
        io.waitScope.poll();
        throw ServeCancelled(what + ": interrupted");
      }
      auto [kind, desc] = describe(e);
      if (!kind.empty()) throw ServeError(kind, desc);
      if (e.getType() == kj::Exception::Type::DISCONNECTED)
        throw ServeError("disconnected", what + ": the connection to wisp serve at " + path +
                                             " dropped (did serve stop?): " + desc);
      if (e.getType() == kj::Exception::Type::OVERLOADED && desc == "operation timed out")
        throw ServeError("error", what + ": no answer from wisp serve at " + path + " within " +
                                      std::to_string(limit_ms) + " ms");
      if (e.getType() == kj::Exception::Type::UNIMPLEMENTED)
        throw ServeError("unimplemented",
                         what + ": this wisp serve does not implement it: " + desc);
      throw ServeError("error", what + ": " + desc);
    }
  }

  // Checks serve's apiVersion (asked for at connect, so it costs no round trip of its own).
  void check_version() {
    KJ_IF_MAYBE (v, version) {
      uint32_t got = wait(v->addBranch(), kCallGraceMs, "version");
      if (got != api::serve::API_VERSION)
        throw ServeError("error", "wisp serve at " + path + " speaks API version " +
                                      std::to_string(got) + "; this wisp speaks " +
                                      std::to_string(api::serve::API_VERSION));
    }
  }

  api::serve::Sandbox::Client sandbox(const std::string& id) {
    auto req = wisp.sandboxesRequest().send().getSandboxes().getRequest();
    req.setId(id);
    return req.send().getSandbox();
  }
};

ServeClient::ServeClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ServeClient::~ServeClient() = default;

std::unique_ptr<ServeClient> ServeClient::connect(const std::string& socket_path, int cancel_fd) {
  sockaddr_un addr;
  if (!unix_address(socket_path, &addr))
    throw ServeError("unreachable",
                     "--server " + socket_path + ": too long for a Unix socket path");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw ServeError("unreachable",
                     errno_message("cannot connect to wisp serve at " + socket_path) +
                         " (is `wisp serve --socket " + socket_path + "` running, as this user?)");
  auto impl = std::make_unique<Impl>();
  impl->path = socket_path;
  if (cancel_fd >= 0) {
    // A duplicate of our own: the observer sets it non-blocking, which must not change the
    // caller's descriptor.
    impl->cancel_fd.reset(::fcntl(cancel_fd, F_DUPFD_CLOEXEC, 0));
    if (!impl->cancel_fd) throw_errno("dup of the cancel descriptor");
    impl->cancel_observer = kj::heap<kj::UnixEventPort::FdObserver>(
        impl->io.unixEventPort, impl->cancel_fd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  }
  impl->stream = impl->io.lowLevelProvider->wrapSocketFd(
      fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  capnp::ReaderOptions opts;
  opts.traversalLimitInWords = api::serve::Wisp::MAX_MESSAGE_BYTES / sizeof(capnp::word);
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
  impl->wisp = impl->rpc->bootstrap(server_id).castAs<api::serve::Wisp>();
  impl->version = impl->wisp.versionRequest()
                      .send()
                      .then([](capnp::Response<api::serve::Wisp::VersionResults>&& r) {
                        return r.getInfo().getApiVersion();
                      })
                      .fork();
  return std::unique_ptr<ServeClient>(new ServeClient(std::move(impl)));
}

ServeInvokeResult ServeClient::invoke(const std::string& name, const std::string& payload,
                                      uint64_t timeout_ms, uint64_t deadline_ms) {
  if (payload.size() > api::serve::Wisp::MAX_PAYLOAD_BYTES)
    throw ServeError("too-large", "too-large: the payload is " + std::to_string(payload.size()) +
                                      " bytes; wisp serve takes at most " +
                                      std::to_string(api::serve::Wisp::MAX_PAYLOAD_BYTES));
  auto req = impl_->wisp.invokeRequest();
  req.setTemplate(name);
  auto r = req.initRequest();
  r.setPayload(bytes_of(payload));
  r.setTimeoutMs(timeout_ms);
  r.setDeadlineMs(deadline_ms);
  auto resp = impl_->wait(req.send(), timeout_ms + deadline_ms + kCallGraceMs, "invoke");
  impl_->check_version();
  auto rr = resp.getResponse();
  ServeInvokeResult out;
  out.result = convert(rr);
  out.error = string_of(rr.getError());
  auto t = rr.getTimings();
  ServeTimings& o = out.timings;
  o.queue_ms = t.getQueueMs();
  o.restore_ms = t.getRestoreMs();
  o.reconnect_ms = t.getReconnectMs();
  o.invoke_ms = t.getInvokeMs();
  o.total_ms = t.getTotalMs();
  o.warm = t.getWarm();
  o.pooled = t.getPooled();
  o.criu_fallback = t.getCriuFallback();
  if (o.criu_fallback) {
    o.criu_source = string_of(t.getCriuSource());
    o.boot_ms = t.getBootMs();
    o.criu_drive_ms = t.getCriuDriveMs();
    o.criu_restore_ms = t.getCriuRestoreMs();
    o.criu_upload_ms = t.getCriuUploadMs();
    o.criu_unpack_ms = t.getCriuUnpackMs();
    o.criu_mount_ms = t.getCriuMountMs();
    o.criu_guest_ms = t.getCriuGuestMs();
  }
  return out;
}

ServeTemplateCreated ServeClient::create_template(
    const manager::TemplateSpec& spec, const std::function<void(const std::string&)>& progress) {
  impl_->check_version();
  auto req = impl_->wisp.templatesRequest().send().getTemplates().createRequest();
  auto s = req.initSpec();
  s.setName(spec.name);
  s.setRebuild(spec.rebuild);
  s.setMode(spec.mode);
  set_list(s.initArgv(static_cast<unsigned>(spec.argv.size())), spec.argv);
  set_list(s.initEnv(static_cast<unsigned>(spec.env.size())), spec.env);
  s.setWarmup(spec.warmup);
  s.setWarmupPayload(bytes_of(spec.warmup_payload));
  s.setKernel(absolute_or_empty(spec.vm.kernel));
  s.setInitrd(absolute_or_empty(spec.vm.initrd));
  s.setRootfs(absolute_or_empty(spec.vm.rootfs));
  std::vector<std::string> drives;
  for (const auto& d : spec.vm.drives) drives.push_back(absolute_drive(d));
  set_list(s.initDrives(static_cast<unsigned>(drives.size())), drives);
  s.setMemMib(static_cast<uint32_t>(spec.vm.mem_bytes >> 20));
  s.setVcpus(spec.vm.vcpus);
  s.setBootTimeoutMs(static_cast<uint64_t>(spec.boot_timeout.count()));
  req.setProgress(kj::heap<ProgressPrinter>(progress));
  // Booting, warming up and snapshotting take the boot timeout and then some per warm-up call.
  uint64_t limit = static_cast<uint64_t>(spec.boot_timeout.count()) + kCallGraceMs * 10 +
                   uint64_t{spec.warmup} * 30000;
  auto resp = impl_->wait(req.send(), limit, "template create");
  ServeTemplateCreated out;
  out.info = convert(resp.getTemplate());
  out.boot_ms = resp.getBootMs();
  out.warmup_ms = resp.getWarmupMs();
  return out;
}

SandboxInfo ServeClient::create_sandbox(const std::string& template_name, uint64_t timeout_ms,
                                        uint64_t deadline_ms) {
  impl_->check_version();
  auto req = impl_->wisp.sandboxesRequest().send().getSandboxes().createRequest();
  req.setTemplate(template_name);
  req.setTimeoutMs(timeout_ms);
  req.setDeadlineMs(deadline_ms);
  req.setDetached(true);
  auto resp = impl_->wait(req.send(), deadline_ms + kCallGraceMs, "sandbox create");
  return convert(resp.getInfo());
}

std::vector<SandboxInfo> ServeClient::list_sandboxes() {
  impl_->check_version();
  auto resp = impl_->wait(impl_->wisp.sandboxesRequest().send().getSandboxes().listRequest().send(),
                          kCallGraceMs, "sandbox list");
  std::vector<SandboxInfo> out;
  for (auto s : resp.getSandboxes()) out.push_back(convert(s));
  return out;
}

void ServeClient::kill_sandbox(const std::string& id) {
  impl_->check_version();
  impl_->wait(impl_->sandbox(id).killRequest().send().ignoreResult(), kCallGraceMs, "sandbox kill");
}

manager::TemplateInfo ServeClient::snapshot_sandbox(const std::string& id,
                                                    const std::string& name) {
  impl_->check_version();
  auto req = impl_->sandbox(id).snapshotRequest();
  req.setName(name);
  // The VMM writes the pages the sandbox changed: seconds for a large one.
  auto resp = impl_->wait(req.send(), kSnapshotWaitMs, "sandbox snapshot");
  return convert(resp.getTemplate());
}

client::InvokeResult ServeClient::exec(const std::string& id, const ExecSpec& spec, int in_fd,
                                       int out_fd, int err_fd) {
  impl_->check_version();
  api::serve::Sandbox::Client sandbox = impl_->sandbox(id);
  auto fill = [&spec](api::serve::ExecRequest::Builder b) {
    set_list(b.initArgv(static_cast<unsigned>(spec.argv.size())), spec.argv);
    set_list(b.initEnv(static_cast<unsigned>(spec.env.size())), spec.env);
    b.setTimeoutMs(spec.timeout_ms);
  };
  uint64_t limit = spec.timeout_ms + kCallGraceMs;
  auto stream_req = sandbox.execStreamRequest();
  fill(stream_req.initRequest());
  stream_req.setOutput(kj::heap<OutputWriter>(out_fd, err_fd));
  kj::Maybe<api::serve::Process::Client> process;
  try {
    // Waited for before stdin is read, so a serve without execStream leaves stdin whole for
    // the fallback below.
    auto started = impl_->wait(stream_req.send(), limit, "sandbox exec");
    process = started.getProcess();
  } catch (const ServeError& e) {
    // serve without execStream (unimplemented), or a serve whose guest agent lacks it (serve
    // says bad-request: "... does not implement it"): Sandbox.exec does the same, unstreamed.
    bool missing = e.kind() == "unimplemented" ||
                   (e.kind() == "bad-request" &&
                    std::string(e.what()).find("does not implement") != std::string::npos);
    if (!missing) throw;
  }
  KJ_IF_MAYBE (p, process) {
    auto input = impl_->io.lowLevelProvider->wrapInputFd(
        start_stdin_pipe(in_fd), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                     kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
    auto buffer = kj::heapArray<capnp::byte>(65536);
    // The command may end without reading all of its stdin: a failed write is not its failure.
    auto stdin_task = pump_stdin(*input, *p, buffer).eagerlyEvaluate([](kj::Exception&&) {});
    try {
      auto resp = impl_->wait(p->waitRequest().send(), limit, "sandbox exec");
      return convert(resp.getResponse());
    } catch (const ServeCancelled&) {
      // Interrupted here: the command goes too (the sandbox lives on).
      auto kill = p->signalRequest();
      kill.setSignal(SIGKILL);
      try {
        kill.send().ignoreResult().wait(impl_->io.waitScope);
      } catch (const kj::Exception&) {
      }
      throw;
    }
  }
  auto req = sandbox.execRequest();
  fill(req.initRequest());
  std::string input = read_all_fd(in_fd);
  if (input.size() > api::serve::Wisp::MAX_PAYLOAD_BYTES)
    throw ServeError("too-large", "too-large: stdin is " + std::to_string(input.size()) +
                                      " bytes; this wisp serve (no execStream) takes at most " +
                                      std::to_string(api::serve::Wisp::MAX_PAYLOAD_BYTES));
  req.getRequest().setStdin(bytes_of(input));
  auto resp = impl_->wait(req.send(), limit, "sandbox exec");
  return convert(resp.getResponse());
}

}  // namespace wisp::cli
