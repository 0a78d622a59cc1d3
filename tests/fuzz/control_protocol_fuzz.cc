// libFuzzer target for the VMM's control protocol: what a client of the control socket sends
// (Cap'n Proto RPC messages, api/vmm.capnp) served by ControlSessions, as ControlServer serves
// each connection, over a real Unix socketpair with two empty files attached (SCM_RIGHTS), so a
// snapshot request can reach the service. The input: a byte that picks the service's behaviour
// (bit 0: the VM is stopping, bit 1: every call fails), a 16-bit little-endian offset into the
// stream where the files are attached (the message starting there receives them), the stream.
// Checks: nothing crashes, and once the connection is gone the VM is paused exactly when a
// lasting pause holds it (a pause never outlives its connection by accident).
//
// An empty corpus directory is seeded with a valid session (bootstrap, then every call).
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <dirent.h>
#include <kj/async-io.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "api/vmm.capnp.h"
#include "base/error.h"
#include "base/file_io.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "vmm/control/control_sessions.h"

namespace {

using namespace wisp;  // NOLINT: a fuzz target

void check(bool ok) {
  if (!ok) __builtin_trap();
}

class FakeService final : public control::Service {
 public:
  explicit FakeService(bool failing) : failing_(failing) {}
  void pause(bool) override {
    maybe_fail();
    paused = true;
  }
  void resume() override {
    maybe_fail();
    paused = false;
  }
  control::SnapshotReport snapshot(const control::SnapshotRequest& r) override {
    maybe_fail();
    check(r.state_fd >= 0 && r.memory_fd >= 0);
    control::SnapshotReport out;
    out.id = r.dir.substr(0, 64);
    out.diff = r.diff;
    return out;
  }
  control::MemoryStats stats() override {
    maybe_fail();
    return {1, 2, 3};
  }
  bool paused = false;

 private:
  void maybe_fail() {
    if (failing_) throw Error("fuzz: the service failed");
  }
  bool failing_;
};

// Sends `bytes` on `fd`, two empty writable files attached from `split` on, and ends the stream.
void send_session(int fd, const uint8_t* bytes, size_t size, size_t split) {
  UniqueFd state(::memfd_create("state", MFD_CLOEXEC));
  UniqueFd memory(::memfd_create("memory", MFD_CLOEXEC));
  check(state && memory);
  int fds[2] = {state.get(), memory.get()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(fds))] = {};
  split = std::min(split, size);
  if (split > 0) check(::send(fd, bytes, split, MSG_NOSIGNAL) == static_cast<ssize_t>(split));
  iovec iov{const_cast<uint8_t*>(bytes) + split, size - split};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(fds));
  std::memcpy(CMSG_DATA(c), fds, sizeof(fds));
  if (size > split) check(::sendmsg(fd, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(size - split));
  ::shutdown(fd, SHUT_WR);
}

// ---- The seed: a valid session ------------------------------------------------------------

using Msg = capnp::rpc::Message::Builder;
using Fill = kj::Function<void(Msg)>;

void append(kj::VectorOutputStream& out, Fill fill) {
  capnp::MallocMessageBuilder builder;
  fill(builder.initRoot<capnp::rpc::Message>());
  capnp::writeMessage(out, builder);
}

// A call of method `method` on the bootstrap capability (question 0); `params` fills its
// parameters, with `table` collecting the capabilities they hold.
capnp::rpc::Payload::Builder call(capnp::rpc::Message::Builder m, uint32_t question,
                                  uint16_t method) {
  auto c = m.initCall();
  c.setQuestionId(question);
  c.initTarget().initPromisedAnswer().setQuestionId(0);
  c.setInterfaceId(capnp::typeId<wisp::api::Vmm>());
  c.setMethodId(method);
  return c.initParams();
}

std::string seed_session() {
  kj::VectorOutputStream out;
  append(out, [](Msg m) { m.initBootstrap().setQuestionId(0); });
  append(out, [](Msg m) { call(m, 1, 0); });  // ping
  append(out, [](Msg m) {
    call(m, 2, 1).getContent().initAs<wisp::api::Vmm::PauseParams>().setLasting(false);
  });
  size_t split = out.getArray().size();
  append(out, [](Msg m) {
    auto p = call(m, 3, 3);
    capnp::BuilderCapabilityTable table;
    auto params = table.imbue(p.getContent().initAs<wisp::api::Vmm::SnapshotParams>());
    params.setDir("/snap");
    params.setDiff(true);
    params.setStateFile(wisp::api::FileHandle::Client(capnp::newBrokenCap("seed")));
    params.setMemoryFile(wisp::api::FileHandle::Client(capnp::newBrokenCap("seed")));
    auto caps = p.initCapTable(2);
    for (uint32_t i = 0; i < 2; ++i) {
      caps[i].setSenderHosted(i);
      caps[i].setAttachedFd(static_cast<uint8_t>(i));
    }
  });
  append(out, [](Msg m) { call(m, 4, 4); });  // stats
  append(out, [](Msg m) { call(m, 5, 2); });  // resume
  append(out, [](Msg m) {
    call(m, 6, 1).getContent().initAs<wisp::api::Vmm::PauseParams>().setLasting(true);
  });
  auto bytes = out.getArray();
  std::string header = {'\0', static_cast<char>(split & 0xff), static_cast<char>(split >> 8)};
  return header + std::string(bytes.asChars().begin(), bytes.size());
}

// Writes the seed session into the first corpus directory named on the command line when that
// directory is empty.
void seed_corpus(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') continue;
    DIR* d = ::opendir(argv[i]);
    if (!d) return;
    bool empty = true;
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') empty = false;
    ::closedir(d);
    if (!empty) return;
    std::string seed = seed_session();
    std::string path = std::string(argv[i]) + "/seed-session";
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
      std::fwrite(seed.data(), 1, seed.size(), f);
      std::fclose(f);
    }
    return;
  }
}

capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = wisp::api::Vmm::MAX_MESSAGE_BYTES / sizeof(capnp::word);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  wisp::set_log_level(wisp::LogLevel::kError);
  seed_corpus(*argc, *argv);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kj::AsyncIoContext io = kj::setupAsyncIo();
  if (size < 3) return 0;
  const bool stopping = data[0] & 1;
  FakeService service(data[0] & 2);
  ControlSessions sessions(
      [stopping](const std::function<void()>& fn) {
        if (stopping) return false;
        fn();
        return true;
      },
      service);
  int pair[2];
  check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  UniqueFd client(pair[1]);
  send_session(client.get(), data + 3, size - 3, data[1] | size_t{data[2]} << 8);
  PauseHolds::ConnectionId id = 0;
  {
    auto stream =
        io.lowLevelProvider->wrapUnixSocketFd(pair[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    capnp::TwoPartyVatNetwork network(*stream, wisp::api::Vmm::MAX_FDS_PER_MESSAGE,
                                      capnp::rpc::twoparty::Side::SERVER, reader_options());
    auto rpc = capnp::makeRpcServer(network, sessions.open(&id));
    network.onDisconnect().wait(io.waitScope);
  }
  sessions.close(id);
  if (!stopping && !(data[0] & 2)) check(service.paused == sessions.holds().lasting());
  return 0;
}
