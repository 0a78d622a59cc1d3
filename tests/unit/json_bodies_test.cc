// The HTTP gateway's JSON bodies decoded into Cap'n Proto structs (json_bodies.h), apart from
// the routes that use them (http_gateway_test.cc).
#include "manager/http_gateway/json_bodies.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <gtest/gtest.h>

#include <string>

#include "api/wisp.capnp.h"

namespace wisp::http_gateway {
namespace {

TEST(JsonBodies, UnicodeEscapesArriveAsTheirCharacters) {
  // capnp 0.9's decoder alone makes "\u00e9\u003e" "I4" (base/json_unicode.h); Python's
  // json.dumps escapes every non-ASCII character that way.
  capnp::JsonCodec codec;
  capnp::MallocMessageBuilder m;
  auto spec = m.initRoot<api::serve::TemplateSpec>();
  std::string body = R"({"name": "caf\u00e9\u003e", "argv": ["sh", "-c", "echo \"\u0026\""]})";
  decode_json(codec, kj::arrayPtr(reinterpret_cast<const kj::byte*>(body.data()), body.size()),
              capnp::toDynamic(spec), "the request body");
  EXPECT_EQ(std::string(spec.getName().cStr()), "caf\xc3\xa9>");
  ASSERT_EQ(spec.getArgv().size(), 3u);
  EXPECT_EQ(std::string(spec.getArgv()[2].cStr()), "echo \"&\"");
  std::string bad = R"({"name": "\ud800"})";
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                 decode_json(
                     codec, kj::arrayPtr(reinterpret_cast<const kj::byte*>(bad.data()), bad.size()),
                     capnp::toDynamic(spec), "the request body");
               })) {
    std::string d = e->getDescription().cStr();
    EXPECT_EQ(d.rfind("bad-request: the request body is not valid JSON of TemplateSpec", 0), 0u)
        << d;
    EXPECT_NE(d.find("lone UTF-16 surrogate"), std::string::npos) << d;
  } else {
    ADD_FAILURE() << "a lone surrogate was decoded";
  }
}

}  // namespace
}  // namespace wisp::http_gateway
