#include "manager/http_gateway/json_bodies.h"

#include <capnp/message.h>
#include <kj/encoding.h>

#include "api/wisp.capnp.h"
#include "base/error.h"
#include "base/json_unicode.h"
#include "manager/http_gateway/error_status.h"

namespace wisp::http_gateway {
namespace {

// Bodies arrive in pieces of at most this much.
constexpr size_t kReadChunk = 64 * 1024;

struct BodyReader {
  kj::AsyncInputStream& in;
  uint64_t limit;
  std::string what;
  kj::Vector<kj::byte> data;
  kj::byte chunk[kReadChunk];

  kj::Promise<kj::Array<kj::byte>> next() {
    // A body kj-http cannot frame (a bad chunk size, a connection that ends early) is the
    // client's error, not the service's.
    auto read = in.tryRead(chunk, 1, sizeof chunk).catch_([this](kj::Exception&& e) -> size_t {
      if (e.getType() == kj::Exception::Type::DISCONNECTED) kj::throwFatalException(kj::mv(e));
      fail("bad-request", what + " could not be read: " + e.getDescription().cStr());
    });
    return read.then([this](size_t n) -> kj::Promise<kj::Array<kj::byte>> {
      if (n == 0) return data.releaseAsArray();
      if (data.size() + n > limit)
        fail("too-large", what + " is over " + std::to_string(limit) + " bytes");
      data.addAll(chunk, chunk + n);
      return next();
    });
  }
};

}  // namespace

kj::Own<capnp::JsonCodec> make_codec() {
  auto codec = kj::heap<capnp::JsonCodec>();
  codec->handleByAnnotation<api::serve::InvokeRequest>();
  codec->handleByAnnotation<api::serve::InvokeResponse>();
  codec->handleByAnnotation<api::serve::ExecRequest>();
  codec->handleByAnnotation<api::serve::TemplateInfo>();
  codec->handleByAnnotation<api::serve::SandboxInfo>();
  codec->setRejectUnknownFields(true);
  codec->setMaxNestingDepth(16);
  return codec;
}

kj::Promise<kj::Array<kj::byte>> read_body(kj::AsyncInputStream& body, uint64_t limit,
                                           std::string what) {
  KJ_IF_MAYBE (length, body.tryGetLength()) {
    if (*length > limit)
      fail("too-large", what + " of " + std::to_string(*length) + " bytes is over " +
                            std::to_string(limit) + " bytes");
  }
  auto reader = kj::heap<BodyReader>(BodyReader{body, limit, std::move(what), {}, {}});
  auto promise = reader->next();
  return promise.attach(kj::mv(reader));
}

void decode_json(const capnp::JsonCodec& codec, kj::ArrayPtr<const kj::byte> json,
                 capnp::DynamicStruct::Builder out, const std::string& what) {
  std::string type = out.getSchema().getShortDisplayName().cStr();
  capnp::MallocMessageBuilder parsed;
  auto value = parsed.initRoot<capnp::JsonValue>();
  // \uXXXX escapes made UTF-8 first: the codec decodes them wrongly (base/json_unicode.h).
  std::string text;
  try {
    text = unescape_json_unicode(std::string(json.asChars().begin(), json.size()), "in a string");
  } catch (const Error& e) {
    fail("bad-request", what + " is not valid JSON of " + type + ": " + e.what());
  }
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                 codec.decodeRaw(kj::ArrayPtr<const char>(text.data(), text.size()), value);
               })) {
    fail("bad-request", what + " is not valid JSON of " + type + ": " + e->getDescription().cStr());
  }
  if (!value.isObject())
    fail("bad-request", what + " is not valid JSON of " + type + ": not an object");
  // The codec takes a non-string for a base64 Data field as empty and skips characters that
  // are not base64: checked here, so a wrong payload is an error rather than another payload.
  for (auto field : value.getObject()) {
    KJ_IF_MAYBE (f, out.getSchema().findFieldByName(field.getName())) {
      if (f->getType().which() != capnp::schema::Type::DATA) continue;
      auto v = field.getValue();
      std::string name = field.getName().cStr();
      if (!v.isString())
        fail("bad-request",
             what + " is not valid JSON of " + type + ": \"" + name + "\" is not a base64 string");
      auto text = v.getString();
      if (kj::decodeBase64(kj::arrayPtr(text.cStr(), text.size())).hadErrors)
        fail("bad-request",
             what + " is not valid JSON of " + type + ": \"" + name + "\" is not valid base64");
    }
  }
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { codec.decode(value.asReader(), out); })) {
    fail("bad-request", what + " is not valid JSON of " + type + ": " + e->getDescription().cStr());
  }
}

std::string error_json(const capnp::JsonCodec& codec, const std::string& message) {
  capnp::MallocMessageBuilder message_builder;
  auto value = message_builder.initRoot<capnp::JsonValue>();
  auto field = value.initObject(1)[0];
  field.setName("error");
  field.initValue().setString(message);
  kj::String json = codec.encodeRaw(value);
  return std::string(json.cStr(), json.size());
}

}  // namespace wisp::http_gateway
