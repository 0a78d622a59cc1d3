#include "manager/service/vm_links.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <sys/random.h>
#include <time.h>

#include <cstring>

#include "api/agent.capnp.h"
#include "api/agent_wire.h"
#include "api/vmm.capnp.h"
#include "api/vmm_page_ranges.h"
#include "api/vsock_bridge_stream.h"
#include "base/clock.h"

namespace wisp::service {
namespace {

using client::bridge_connect_unanswered;
using client::convert;
using client::fill_handler;
using client::UnansweredStream;

using std::chrono::milliseconds;

// Every agent call but invoke answers within this; invoke gets its timeout plus this.
constexpr milliseconds kCallGrace{10000};
// One CONNECT attempt waits this long for the bridge's reply.
constexpr milliseconds kConnectAttempt{2000};
constexpr size_t kEntropyBytes = 64;

kj::Duration to_kj(milliseconds ms) { return static_cast<int64_t>(ms.count()) * kj::MILLISECONDS; }

[[noreturn]] void fail(const std::string& message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

capnp::Data::Reader data_of(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

// A two-party RPC connection over `stream`, reading messages of at most `max_bytes`.
struct RpcConnection {
  RpcConnection(kj::Own<kj::AsyncIoStream> s, uint64_t max_bytes) : stream(kj::mv(s)) {
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = max_bytes / sizeof(capnp::word);
    opts.nestingLimit = 32;
    network =
        kj::heap<capnp::TwoPartyVatNetwork>(*stream, capnp::rpc::twoparty::Side::CLIENT, opts);
    rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network));
    capnp::MallocMessageBuilder message(8);
    auto server = message.getRoot<capnp::rpc::twoparty::VatId>();
    server.setSide(capnp::rpc::twoparty::Side::SERVER);
    bootstrap = rpc->bootstrap(server);
  }
  // Destroyed in reverse: the capability and RPC system before the stream they use.
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  capnp::Capability::Client bootstrap = nullptr;
};

// Connects to the VMM's vsock bridge at `path` and asks for guest port `port`: the stream
// once the guest accepted.
kj::Promise<kj::Own<kj::AsyncIoStream>> bridge_connect(kj::AsyncIoContext& io,
                                                       const std::string& path, uint32_t port) {
  return bridge_connect_unanswered(io, path, port).then([](kj::Own<UnansweredStream> stream) {
    auto accepted = stream->accepted();
    return accepted.then([stream = kj::mv(stream)]() mutable -> kj::Own<kj::AsyncIoStream> {
      return kj::mv(stream);
    });
  });
}

// The agent's OutputSink, forwarding to a caller's OutputStream.
class SinkAdapter final : public api::OutputSink::Server {
 public:
  explicit SinkAdapter(kj::Own<OutputStream> out) : out_(kj::mv(out)) {}
  kj::Promise<void> stdout(StdoutContext context) override {
    return out_->stdout_chunk(context.getParams().getData());
  }
  kj::Promise<void> stderr(StderrContext context) override {
    return out_->stderr_chunk(context.getParams().getData());
  }

 private:
  kj::Own<OutputStream> out_;
};

class ProcessAdapter final : public StreamedProcess {
 public:
  ProcessAdapter(kj::Timer& timer, api::Process::Client p, uint64_t timeout_ms)
      : timer_(timer), p_(kj::mv(p)), timeout_ms_(timeout_ms) {}
  kj::Promise<void> write(kj::Array<kj::byte> data) override {
    auto req = p_.writeRequest();
    req.setData(data);
    return req.send().ignoreResult();
  }
  kj::Promise<void> close_stdin() override { return p_.closeStdinRequest().send().ignoreResult(); }
  kj::Promise<void> signal(int32_t signal) override {
    auto req = p_.signalRequest();
    req.setSignal(signal);
    return req.send().ignoreResult();
  }
  kj::Promise<void> resize(uint16_t width, uint16_t height) override {
    auto req = p_.resizeRequest();
    req.setWidth(width);
    req.setHeight(height);
    return req.send().ignoreResult();
  }
  kj::Promise<client::InvokeResult> wait() override {
    return timer_.timeoutAfter(
        to_kj(milliseconds(timeout_ms_) + kCallGrace),
        p_.waitRequest().send().then(
            [](capnp::Response<api::Process::WaitResults>&& r) { return convert(r.getResult()); }));
  }

 private:
  kj::Timer& timer_;
  api::Process::Client p_;
  uint64_t timeout_ms_;
};

class AgentLinkImpl final : public AgentLink {
 public:
  AgentLinkImpl(kj::Timer& timer, kj::Own<kj::AsyncIoStream> stream)
      : timer_(timer),
        conn_(kj::mv(stream), api::Agent::MAX_MESSAGE_BYTES),
        agent_(conn_.bootstrap.castAs<api::Agent>()) {}
  AgentLinkImpl(kj::Timer& timer, kj::Own<UnansweredStream> stream)
      : timer_(timer),
        unanswered_(stream.get()),
        conn_(kj::mv(stream), api::Agent::MAX_MESSAGE_BYTES),
        agent_(conn_.bootstrap.castAs<api::Agent>()) {}

  // A branch of the stream's own fork, none kept here: the stream (in conn_) must outlive
  // every branch, since its fork still reads from it.
  kj::Promise<void> accepted() override {
    return unanswered_ ? unanswered_->accepted() : kj::READY_NOW;
  }

  kj::Promise<void> ping() override {
    return timer_.timeoutAfter(to_kj(kCallGrace), agent_.pingRequest().send().ignoreResult());
  }
  kj::Promise<void> resumed_fresh() override {
    kj::byte entropy[kEntropyBytes];
    if (getentropy(entropy, sizeof(entropy)) != 0) fail("getentropy failed");
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    auto req = agent_.resumedRequest();
    req.setEntropy(kj::arrayPtr(entropy, sizeof(entropy)));
    req.setWallClockUnixNs(now.tv_sec * 1000000000ll + now.tv_nsec);
    std::memset(entropy, 0, sizeof(entropy));
    return timer_.timeoutAfter(to_kj(kCallGrace), req.send().ignoreResult());
  }
  kj::Promise<client::InvokeResult> invoke(const client::InvokeRequest& r) override {
    auto req = agent_.invokeRequest();
    auto b = req.initRequest();
    b.setMode(r.mode == client::InvokeMode::kWorker ? api::InvokeRequest::Mode::WORKER
                                                    : api::InvokeRequest::Mode::EXEC);
    fill_handler(b.initHandler(), r.handler);
    b.setPayload(data_of(r.payload));
    b.setTimeoutMs(r.timeout_ms);
    // The agent enforces the timeout itself; the grace covers its kill, reap and reply.
    return timer_.timeoutAfter(
        to_kj(milliseconds(r.timeout_ms) + kCallGrace),
        req.send().then([](capnp::Response<api::Agent::InvokeResults>&& resp) {
          auto result = resp.getResult();
          return convert(result);
        }));
  }
  kj::Promise<uint64_t> touch_memory(
      const std::vector<std::pair<uint64_t, uint64_t>>& ranges) override {
    auto req = agent_.touchMemoryRequest();
    auto list = req.initRanges(static_cast<unsigned>(ranges.size()));
    for (size_t i = 0; i < ranges.size(); ++i) {
      list[i].setFirstPage(ranges[i].first);
      list[i].setPageCount(ranges[i].second);
    }
    // About 100 us a page on the nested testbed (a nested page fault each): 5 s for 50 000
    // pages; the grace covers a slow guest.
    return timer_.timeoutAfter(
        to_kj(kCallGrace), req.send().then([](capnp::Response<api::Agent::TouchMemoryResults>&& r) {
          return r.getPages();
        }));
  }
  kj::Promise<kj::Own<StreamedProcess>> exec_stream(const client::Handler& handler,
                                                    uint64_t timeout_ms,
                                                    kj::Own<OutputStream> output) override {
    if (handler.terminal) return exec_stream_on_terminal(handler, timeout_ms, kj::mv(output));
    return start_stream(handler, timeout_ms, kj::mv(output));
  }
  // An older agent ignores Handler.terminal and would run the command on pipes: asked first.
  kj::Promise<kj::Own<StreamedProcess>> exec_stream_on_terminal(const client::Handler& handler,
                                                                uint64_t timeout_ms,
                                                                kj::Own<OutputStream> output) {
    auto pinged = timer_.timeoutAfter(to_kj(kCallGrace), agent_.pingRequest().send());
    return pinged.then([this, handler, timeout_ms, output = kj::mv(output)](
                           capnp::Response<api::Agent::PingResults>&& r) mutable {
      if (!r.getInfo().getTerminals()) {
        kj::throwFatalException(kj::Exception(
            kj::Exception::Type::FAILED, __FILE__, __LINE__,
            kj::heapString("unsupported: terminal: this sandbox's wisp-agent predates terminals; "
                           "rebuild its template with this wisp")));
      }
      return start_stream(handler, timeout_ms, kj::mv(output));
    });
  }
  kj::Promise<kj::Own<StreamedProcess>> start_stream(const client::Handler& handler,
                                                     uint64_t timeout_ms,
                                                     kj::Own<OutputStream> output) {
    auto req = agent_.execStreamRequest();
    fill_handler(req.initHandler(), handler);
    req.setTimeoutMs(timeout_ms);
    req.setOutput(kj::heap<SinkAdapter>(kj::mv(output)));
    return timer_.timeoutAfter(
        to_kj(kCallGrace),
        req.send().then([this, timeout_ms](capnp::Response<api::Agent::ExecStreamResults>&& r) {
          return kj::Own<StreamedProcess>(
              kj::heap<ProcessAdapter>(timer_, r.getProcess(), timeout_ms));
        }));
  }
  kj::Promise<void> put_file(const std::string& path, kj::ArrayPtr<const kj::byte> data,
                             uint32_t mode) override {
    auto req = agent_.putFileRequest();
    req.setPath(path);
    req.setData(data);
    req.setMode(mode);
    return timer_.timeoutAfter(to_kj(kCallGrace), req.send().ignoreResult());
  }
  kj::Promise<kj::Array<kj::byte>> get_file(const std::string& path) override {
    auto req = agent_.getFileRequest();
    req.setPath(path);
    return timer_.timeoutAfter(to_kj(kCallGrace),
                               req.send().then([](capnp::Response<api::Agent::GetFileResults>&& r) {
                                 return kj::heapArray<kj::byte>(r.getData());
                               }));
  }

 private:
  kj::Timer& timer_;
  UnansweredStream* unanswered_ = nullptr;  // the stream in conn_, if made so
  RpcConnection conn_;
  api::Agent::Client agent_;
};

class ControlLinkImpl final : public ControlLink {
 public:
  ControlLinkImpl(kj::Timer& timer, kj::Own<kj::AsyncIoStream> stream)
      : timer_(timer),
        conn_(kj::mv(stream), api::Vmm::MAX_MESSAGE_BYTES),
        vmm_(conn_.bootstrap.castAs<api::Vmm>()) {}
  kj::Promise<void> pause(bool lasting, bool hold_clock) override {
    auto req = vmm_.pauseRequest();
    req.setLasting(lasting);
    req.setHoldClock(hold_clock);
    return timer_.timeoutAfter(to_kj(kCallGrace), req.send().ignoreResult());
  }
  kj::Promise<void> resume() override {
    return timer_.timeoutAfter(to_kj(kCallGrace), vmm_.resumeRequest().send().ignoreResult());
  }
  kj::Promise<uint64_t> populate_writable(
      const std::vector<std::pair<uint64_t, uint64_t>>& ranges) override {
    auto req = vmm_.populateWritableRequest();
    api::put_page_ranges(req, ranges);
    return timer_.timeoutAfter(
        to_kj(kCallGrace),
        req.send().then(
            [](capnp::Response<api::Vmm::PopulateWritableResults>&& r) { return r.getPages(); }));
  }
  kj::Promise<std::vector<std::pair<uint64_t, uint64_t>>> written_ranges() override {
    return timer_.timeoutAfter(to_kj(kCallGrace),
                               vmm_.writtenRangesRequest().send().then(
                                   [](capnp::Response<api::Vmm::WrittenRangesResults>&& r) {
                                     return api::page_runs_of(r.getRanges());
                                   }));
  }
  kj::Promise<Sample> sample() override {
    return timer_.timeoutAfter(
        to_kj(kCallGrace),
        vmm_.statsRequest().send().then([](capnp::Response<api::Vmm::StatsResults>&& r) {
          Sample s;
          s.exits = r.getVcpu().getExits();
          s.nested_page_faults = r.getVcpu().getNestedPageFaults();
          s.written_pages = r.getStats().getWrittenPages();
          return s;
        }));
  }

 private:
  kj::Timer& timer_;
  RpcConnection conn_;
  api::Vmm::Client vmm_;
};

kj::Promise<kj::Own<AgentLink>> attempt_agent(kj::AsyncIoContext& io,
                                              kj::Own<AgentConnectOptions> o, uint64_t end_ns,
                                              kj::Own<std::string> why) {
  if (now_ns() >= end_ns)
    fail("no guest agent answered on vsock port " + std::to_string(api::Agent::PORT) + " via " +
         o->uds_path + " within " + std::to_string(o->deadline.count()) +
         " ms (last attempt: " + *why + ")");
  kj::Timer& timer = io.provider->getTimer();
  AgentConnectOptions::Confirm confirm = o->confirm;
  kj::Promise<kj::Own<AgentLink>> link = nullptr;
  if (o->first_calls) {
    auto& first_calls = o->first_calls;
    link =
        bridge_connect_unanswered(io, o->uds_path, api::Agent::PORT)
            .then([&timer, &first_calls, end_ns](kj::Own<UnansweredStream> stream) {
              auto link = kj::heap<AgentLinkImpl>(timer, kj::mv(stream));
              first_calls(*link);
              // No attempt's timeout: the guest might still accept a connection given up
              // on and run its calls; only the deadline ends the wait (no attempt after it).
              uint64_t now = now_ns();
              auto left = static_cast<int64_t>(end_ns > now ? end_ns - now : 0) * kj::NANOSECONDS;
              auto accepted = timer.timeoutAfter(left, link->accepted());
              return accepted.then(
                  [link = kj::mv(link)]() mutable -> kj::Own<AgentLink> { return kj::mv(link); });
            });
  } else {
    link =
        timer
            .timeoutAfter(to_kj(kConnectAttempt), bridge_connect(io, o->uds_path, api::Agent::PORT))
            .then([&timer, confirm](kj::Own<kj::AsyncIoStream> stream) {
              auto link = kj::heap<AgentLinkImpl>(timer, kj::mv(stream));
              kj::Promise<void> check =
                  confirm == AgentConnectOptions::Confirm::kPing     ? link->ping()
                  : confirm == AgentConnectOptions::Confirm::kReseed ? link->resumed_fresh()
                                                                     : kj::READY_NOW;
              return check.then(
                  [link = kj::mv(link)]() mutable -> kj::Own<AgentLink> { return kj::mv(link); });
            });
  }
  return link.catch_([&io, o = kj::mv(o), end_ns, why = kj::mv(why)](
                         kj::Exception&& e) mutable -> kj::Promise<kj::Own<AgentLink>> {
    *why = e.getDescription().cStr();
    if (o->keep_trying && !o->keep_trying())
      fail("the VM stopped before its agent answered (last attempt: " + *why + ")");
    // The guest is resuming: a refused attempt costs the VMM one RST, so poll briskly.
    return io.provider->getTimer()
        .afterDelay(5 * kj::MILLISECONDS)
        .then([&io, o = kj::mv(o), end_ns, why = kj::mv(why)]() mutable {
          return attempt_agent(io, kj::mv(o), end_ns, kj::mv(why));
        });
  });
}

}  // namespace

kj::Promise<kj::Own<AgentLink>> connect_agent(kj::AsyncIoContext& io, AgentConnectOptions options) {
  uint64_t end = now_ns() + static_cast<uint64_t>(options.deadline.count()) * 1000000ull;
  return attempt_agent(io, kj::heap(kj::mv(options)), end, kj::heap<std::string>("not tried"));
}

kj::Promise<kj::Own<ControlLink>> connect_control(kj::AsyncIoContext& io,
                                                  const std::string& socket_path) {
  kj::Timer& timer = io.provider->getTimer();
  return io.provider->getNetwork()
      .parseAddress(kj::str("unix:", socket_path.c_str()))
      .then([](kj::Own<kj::NetworkAddress> addr) { return addr->connect().attach(kj::mv(addr)); })
      .then([&timer](kj::Own<kj::AsyncIoStream> stream) -> kj::Own<ControlLink> {
        return kj::heap<ControlLinkImpl>(timer, kj::mv(stream));
      });
}

}  // namespace wisp::service
