#include "api/vsock_bridge_stream.h"

#include <algorithm>
#include <cstring>

namespace wisp::client {
namespace {

[[noreturn]] void fail(const std::string& message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

}  // namespace

size_t bridge_reply_part(const char* bytes, size_t n, bool* ended) {
  const char* newline = static_cast<const char*>(std::memchr(bytes, '\n', n));
  *ended = newline != nullptr;
  return newline ? static_cast<size_t>(newline - bytes) + 1 : n;
}

bool bridge_reply_accepted(const std::string& reply) {
  return reply.starts_with("OK ") && reply.ends_with('\n');
}

UnansweredStream::UnansweredStream(kj::Own<kj::AsyncIoStream> inner, std::string path)
    : inner_(kj::mv(inner)) {
  answered_ = read_reply()
                  .then([this, path = kj::mv(path)] {
                    if (!bridge_reply_accepted(reply_))
                      fail("the vsock bridge at " + path + " answered CONNECT with '" +
                           reply_.substr(0, kBridgeReplyMaxBytes) + "' instead of 'OK <port>'");
                  })
                  .fork();
}

// In chunks, not byte by byte (a system call each, on every clone's first connection): bytes
// past the newline are the guest's, kept for tryRead.
kj::Promise<void> UnansweredStream::read_reply() {
  return inner_->tryRead(chunk_, 1, sizeof(chunk_)).then([this](size_t n) -> kj::Promise<void> {
    if (n == 0) fail("nothing listens on the guest's vsock port yet");
    const char* bytes = reinterpret_cast<const char*>(chunk_);
    bool ended = false;
    size_t line = bridge_reply_part(bytes, n, &ended);
    reply_.append(bytes, line);
    if (reply_.size() > kBridgeReplyMaxBytes + 1) fail("the vsock bridge's reply is too long");
    if (!ended) return read_reply();
    after_reply_.assign(bytes + line, n - line);
    return kj::READY_NOW;
  });
}

kj::Promise<size_t> UnansweredStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  return answered_.addBranch().then([this, buffer, min_bytes, max_bytes]() -> kj::Promise<size_t> {
    if (after_reply_.empty()) return inner_->tryRead(buffer, min_bytes, max_bytes);
    size_t n = std::min(max_bytes, after_reply_.size());
    std::memcpy(buffer, after_reply_.data(), n);
    after_reply_.erase(0, n);
    if (n >= min_bytes) return n;
    return inner_->tryRead(static_cast<kj::byte*>(buffer) + n, min_bytes - n, max_bytes - n)
        .then([n](size_t more) { return n + more; });
  });
}

kj::Promise<void> UnansweredStream::write(const void* buffer, size_t size) {
  return inner_->write(buffer, size);
}

kj::Promise<void> UnansweredStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  return inner_->write(pieces);
}

kj::Promise<void> UnansweredStream::whenWriteDisconnected() {
  return inner_->whenWriteDisconnected();
}

void UnansweredStream::shutdownWrite() { inner_->shutdownWrite(); }

void UnansweredStream::abortRead() { inner_->abortRead(); }

kj::Promise<kj::Own<UnansweredStream>> bridge_connect_unanswered(kj::AsyncIoContext& io,
                                                                 const std::string& path,
                                                                 uint32_t port) {
  return io.provider->getNetwork()
      .parseAddress(kj::str("unix:", path.c_str()))
      .then([](kj::Own<kj::NetworkAddress> addr) { return addr->connect().attach(kj::mv(addr)); })
      .then([port, path](kj::Own<kj::AsyncIoStream> stream) {
        auto line = kj::heapString(kj::str("CONNECT ", port, "\n"));
        auto& s = *stream;
        return s.write(line.begin(), line.size())
            .attach(kj::mv(line))
            .then([stream = kj::mv(stream), path]() mutable {
              return kj::heap<UnansweredStream>(kj::mv(stream), path);
            });
      });
}

}  // namespace wisp::client
