// A stream to a guest's vsock port through the VMM's Unix-socket bridge ("CONNECT <port>\n",
// answered "OK <n>\n"), usable before the bridge has answered: writes go straight out, and the
// VMM keeps them queued in the socket until the guest accepts (it reads nothing of a
// connection still connecting), so the first calls on a link travel with its connection
// request instead of a round trip after it. Reads wait for the reply line and strip it.
//
// If the bridge refuses (the guest does not listen, or the connection was reset before the
// guest accepted), nothing written reached the guest: the caller may connect again and write
// the same calls anew. Once the guest accepted, the stream is the guest's.
//
// Used by `wisp serve` (manager/service/vm_links.cc) and the standalone agent client.
// Threads: the thread of the KJ event loop the stream was made on.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <string>

namespace wisp::client {

// The bridge's reply line, as both its readers (UnansweredStream and agent_client.h's
// vsock_uds_connect) take it: "OK <port>\n", at most kBridgeReplyMaxBytes before the newline.
constexpr size_t kBridgeReplyMaxBytes = 32;
// How many of `n` bytes just read belong to the reply line: up to its newline (`*ended` set),
// or all of them (the line goes on). What follows the newline is the guest's stream.
size_t bridge_reply_part(const char* bytes, size_t n, bool* ended);
// Whether the whole line `reply` (its newline included) accepted the connection.
bool bridge_reply_accepted(const std::string& reply);

class UnansweredStream final : public kj::AsyncIoStream {
 public:
  // `inner`: a connected bridge socket whose CONNECT line is already written; `path` names
  // the bridge in messages.
  UnansweredStream(kj::Own<kj::AsyncIoStream> inner, std::string path);

  // Resolves once the guest accepted; fails when the bridge refused. A branch of the stream's
  // own fork: the stream must outlive it.
  kj::Promise<void> accepted() { return answered_.addBranch(); }

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;

 private:
  // Reads until the reply line is whole; what came after it in the same reads is the guest's
  // stream, kept in after_reply_.
  kj::Promise<void> read_reply();

  // Declared before answered_, whose reading uses them: destroyed after it.
  kj::Own<kj::AsyncIoStream> inner_;
  std::string reply_;
  std::string after_reply_;  // the guest's first bytes, read with the reply; served first
  kj::byte chunk_[64];
  kj::ForkedPromise<void> answered_ = nullptr;
};

// Connects to the VMM's vsock bridge at `path` and asks for guest port `port`, without waiting
// for the reply: the stream once the CONNECT line is written (a local write).
kj::Promise<kj::Own<UnansweredStream>> bridge_connect_unanswered(kj::AsyncIoContext& io,
                                                                 const std::string& path,
                                                                 uint32_t port);

}  // namespace wisp::client
