#include "base/json_unicode.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "tests/unit/expect_error.h"

namespace wisp {
namespace {

TEST(JsonUnicode, EscapesInStringsBecomeUtf8) {
  EXPECT_EQ(unescape_json_unicode(R"({"a\u003e": "\u00e9\u20ac\ud83d\ude00"})", "body"),
            "{\"a>\": \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}");
  // The ones JSON requires escaped keep a short form; other escapes and text outside strings
  // pass through unchanged.
  EXPECT_EQ(unescape_json_unicode(R"(["\u0022\u005c\u000a\u0009", "\n\\u0041", 1])", "body"),
            R"(["\"\\\n\t", "\n\\u0041", 1])");
}

TEST(JsonUnicode, MalformedEscapesAreNamed) {
  testutil::expect_error<Error>([] { unescape_json_unicode(R"(["\u12"])", "body"); },
                                {"body: a \\u escape without 4 hex digits"});
  testutil::expect_error<Error>([] { unescape_json_unicode(R"(["\ud800x"])", "body"); },
                                {"body: a lone UTF-16 surrogate"});
  testutil::expect_error<Error>([] { unescape_json_unicode(R"(["\udc00"])", "body"); },
                                {"body: a lone UTF-16 surrogate"});
  testutil::expect_error<Error>([] { unescape_json_unicode(R"(["\u0001"])", "body"); },
                                {"body: control character \\u0001"});
}

}  // namespace
}  // namespace wisp
