#include "api/vsock_bridge_stream.h"

namespace wisp::client {
namespace {

// The bridge's reply is "OK <port>\n": anything longer is not a wisp VMM's bridge.
constexpr size_t kMaxReplyBytes = 32;

[[noreturn]] void fail(const std::string& message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

// Reads the bridge's reply line byte by byte: what follows it is already the guest's stream.
kj::Promise<void> read_reply(kj::AsyncIoStream& stream, std::string* reply, kj::byte* c) {
  return stream.tryRead(c, 1, 1).then([&stream, reply, c](size_t n) -> kj::Promise<void> {
    if (n == 0) fail("nothing listens on the guest's vsock port yet");
    reply->push_back(static_cast<char>(*c));
    if (*c == '\n') return kj::READY_NOW;
    if (reply->size() > kMaxReplyBytes) fail("the vsock bridge's reply is too long");
    return read_reply(stream, reply, c);
  });
}

}  // namespace

UnansweredStream::UnansweredStream(kj::Own<kj::AsyncIoStream> inner, std::string path)
    : inner_(kj::mv(inner)) {
  answered_ = read_reply(*inner_, &reply_, &reply_byte_)
                  .then([this, path = kj::mv(path)] {
                    if (reply_.rfind("OK ", 0) != 0)
                      fail("the vsock bridge at " + path + " answered CONNECT with '" +
                           reply_.substr(0, kMaxReplyBytes) + "' instead of 'OK <port>'");
                  })
                  .fork();
}

kj::Promise<size_t> UnansweredStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  return answered_.addBranch().then([this, buffer, min_bytes, max_bytes] {
    return inner_->tryRead(buffer, min_bytes, max_bytes);
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
