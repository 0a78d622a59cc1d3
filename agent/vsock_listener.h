// Listens on a guest vsock port and serves the Agent capability on every host connection
// (up to kMaxSessions at once; each has its own RPC system, all share one Agent). A dropped
// connection (host restarted, VM snapshotted and restored) only ends its own session.
#pragma once

#include <capnp/capability.h>
#include <capnp/message.h>
#include <kj/async-io.h>

#include <cstdint>

namespace wisp::agent {

// Creates, binds and listens on an AF_VSOCK stream socket (any CID). Throws kj::Exception.
kj::Own<kj::ConnectionReceiver> listen_vsock(kj::LowLevelAsyncIoProvider& io, uint32_t port);

inline constexpr int kMaxSessions = 16;

class AgentListener final : private kj::TaskSet::ErrorHandler {
 public:
  AgentListener(kj::Own<kj::ConnectionReceiver> listener, capnp::Capability::Client bootstrap,
                capnp::ReaderOptions options);
  KJ_DISALLOW_COPY(AgentListener);

  // Accepts forever. `options` bounds every incoming message.
  kj::Promise<void> run();

 private:
  void taskFailed(kj::Exception&& exception) override;

  kj::Own<kj::ConnectionReceiver> listener_;
  capnp::Capability::Client bootstrap_;
  capnp::ReaderOptions options_;
  int sessions_ = 0;
  kj::TaskSet tasks_;
};

}  // namespace wisp::agent
