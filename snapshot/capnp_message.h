// One Cap'n Proto message <-> bytes, for the snapshot codecs (state_codec.cc, device_codec.cc).
// Reading takes untrusted bytes: a size cap, word alignment, a traversal limit proportional to
// the input and a nesting limit, and no trailing bytes; whatever Cap'n Proto or the decoder
// refuses becomes one wisp::Error.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"

namespace wisp::snapshot {

inline std::vector<uint8_t> message_bytes(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  auto raw = words.asBytes();
  return std::vector<uint8_t>(raw.begin(), raw.end());
}

// The bytes of one message with root `Root`, filled by encode(Root::Builder).
template <typename Root, typename Encode>
std::vector<uint8_t> write_message(Encode&& encode) {
  capnp::MallocMessageBuilder message;
  encode(message.initRoot<Root>());
  return message_bytes(message);
}

// Parses `data` as one message with root `Root` and returns decode(root). Throws
// Error(prefix + why) for anything refused on the way: over `max_bytes`, not whole words,
// trailing bytes, what Cap'n Proto refuses (kj::Exception) and what `decode` throws (Error).
template <typename Root, typename Decode>
auto read_message(std::span<const uint8_t> data, uint64_t max_bytes, const std::string& prefix,
                  Decode&& decode) {
  if (data.size() > max_bytes)
    throw Error(prefix + std::to_string(data.size()) + " bytes (limit " +
                std::to_string(max_bytes) + ")");
  if (data.size() % sizeof(capnp::word) != 0)
    throw Error(prefix + "length " + std::to_string(data.size()) + " is not a multiple of 8");
  // Copied into word-aligned storage: the bytes sit at any offset of a file.
  auto words = kj::heapArray<capnp::word>(data.size() / sizeof(capnp::word));
  if (!data.empty()) std::memcpy(words.begin(), data.data(), data.size());
  capnp::ReaderOptions options;
  // Each word is visited about once; the slack covers the segment table and small messages.
  options.traversalLimitInWords = 2 * words.size() + 1024;
  options.nestingLimit = 16;
  std::string why;
  try {
    capnp::FlatArrayMessageReader reader(words, options);
    if (reader.getEnd() == words.end()) return decode(reader.getRoot<Root>());
    why = "trailing bytes after the message";
  } catch (const kj::Exception& e) {
    why = e.getDescription().cStr();
  } catch (const Error& e) {
    why = e.what();
  }
  throw Error(prefix + why);
}

// Refuses a NUL inside the text: the encoder writes strings as C strings, so it would cut one
// short and the state would not survive the next save.
inline std::string read_text(capnp::Text::Reader t) {
  if (std::memchr(t.cStr(), '\0', t.size()) != nullptr)
    throw Error("a text field contains a NUL byte");
  return std::string(t.cStr(), t.size());
}

// Refuses a list of `n` entries over `limit` before decoding it: a list of small structs costs
// a word or two each in the message but a full C++ object each once decoded.
inline void check_count(size_t n, size_t limit, const char* what) {
  if (n > limit)
    throw Error(std::to_string(n) + " " + what + " (limit " + std::to_string(limit) + ")");
}

}  // namespace wisp::snapshot
