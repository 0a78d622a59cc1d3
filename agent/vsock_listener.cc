#include "agent/vsock_listener.h"

#include <capnp/rpc-twoparty.h>
#include <errno.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/reseed_order.h"

namespace wisp::agent {
namespace {

// One connection's RPC system; lives until the peer disconnects.
struct Session {
  Session(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap,
          capnp::ReaderOptions options)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, options),
        rpc(capnp::makeRpcServer(network,
                                 capnp::Capability::Client(reseed_ordered(kj::mv(bootstrap))))) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

}  // namespace

kj::Own<kj::ConnectionReceiver> listen_vsock(kj::LowLevelAsyncIoProvider& io, uint32_t port) {
  int fd;
  KJ_SYSCALL(fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "vsock");
  kj::AutoCloseFd owned(fd);
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  KJ_SYSCALL(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), "bind vsock", port);
  KJ_SYSCALL(listen(fd, 16), "listen vsock");
  return io.wrapListenSocketFd(owned.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                                    kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                                                    kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
}

AgentListener::AgentListener(kj::Own<kj::ConnectionReceiver> listener,
                             capnp::Capability::Client bootstrap, capnp::ReaderOptions options)
    : listener_(kj::mv(listener)),
      bootstrap_(kj::mv(bootstrap)),
      options_(options),
      tasks_(*this) {}

kj::Promise<void> AgentListener::run() {
  return listener_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    if (sessions_ >= kMaxSessions) {
      KJ_LOG(WARNING, "too many agent connections; refusing one");
      return run();  // dropping `stream` closes it
    }
    ++sessions_;
    auto session = kj::heap<Session>(kj::mv(stream), bootstrap_, options_);
    tasks_.add(session->network.onDisconnect().attach(kj::mv(session)).attach(kj::defer([this]() {
      --sessions_;
    })));
    return run();
  });
}

void AgentListener::taskFailed(kj::Exception&& exception) {
  KJ_LOG(WARNING, "agent connection ended with an error", exception);
}

}  // namespace wisp::agent
