// The HTTP/JSON gateway (manager/http_gateway) against a fake in-process Wisp (fake_wisp.h):
// real kj-http on both sides of an in-memory connection (and one real Unix socket through
// serve_http), every route, every status mapping, JSON round trips, the bearer token, bodies
// over the limits, malformed JSON and requests, and /metrics parsed back.
#include "manager/http_gateway/http_gateway.h"

#include <arpa/inet.h>
#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/encoding.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "api/wisp.capnp.h"
#include "manager/http_gateway/error_status.h"
#include "manager/http_gateway/gateway_service.h"
#include "manager/http_gateway/json_bodies.h"
#include "manager/http_gateway/metrics_text.h"
#include "manager/http_gateway/route.h"
#include "tests/unit/expect_error.h"
#include "tests/unit/fake_wisp.h"

namespace wisp::http_gateway {
namespace {

using kj::HttpMethod;
using testutil::FakeWispState;

struct HttpResult {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  bool has(const std::string& name) const { return headers.count(name) != 0; }
};

struct Request {
  HttpMethod method = HttpMethod::GET;
  std::string url;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool chunked = false;                 // no Content-Length: the body streams
  kj::Maybe<uint64_t> declared_length;  // a Content-Length other than the body's size
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

kj::EncodingResult<kj::Array<kj::byte>> decode_base64(const std::string& s) {
  return kj::decodeBase64(kj::arrayPtr(s.data(), s.size()));
}

std::string string_of(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

class GatewayTest : public ::testing::Test {
 protected:
  ~GatewayTest() noexcept override {}

  // Builds the gateway on first use, so a test may set token_ or the limits first.
  Gateway& gateway() {
    if (gateway_.get() == nullptr) {
      gateway_ = kj::heap<Gateway>(io_.provider->getTimer(), testutil::make_fake_wisp(state_),
                                   GatewayOptions{token_}, max_payload_, max_json_);
    }
    return *gateway_;
  }

  // One request on a connection of its own.
  HttpResult call(const Request& r) {
    auto pipe = kj::newTwoWayPipe();
    auto served =
        gateway().serve_connection(kj::mv(pipe.ends[0])).eagerlyEvaluate([](kj::Exception&&) {});
    auto client = kj::newHttpClient(client_table_, *pipe.ends[1]);
    return send_on(*client, r);
  }

  HttpResult send_on(kj::HttpClient& client, const Request& r) {
    kj::HttpHeaders headers(client_table_);
    for (auto& [name, value] : r.headers) headers.add(name.c_str(), value.c_str());
    kj::Maybe<uint64_t> length =
        r.chunked ? kj::Maybe<uint64_t>(nullptr) : kj::Maybe<uint64_t>(r.body.size());
    KJ_IF_MAYBE (d, r.declared_length) {
      length = *d;
    }
    auto req = client.request(r.method, r.url.c_str(), headers, length);
    // The gateway may answer before it has read the body (413): the write runs beside the
    // response and may fail when the server closes the connection.
    kj::Promise<void> writing = kj::READY_NOW;
    bool send_body = r.body.size() > 0 || r.chunked;
    if (r.declared_length != nullptr) {
      writing = kj::NEVER_DONE;  // the declared body never comes
      writing = writing.attach(kj::mv(req.body));
    } else if (send_body) {
      auto body = kj::heap<std::string>(r.body);
      auto w = req.body->write(body->data(), body->size());
      writing = w.attach(kj::mv(body), kj::mv(req.body));
    } else {
      req.body = nullptr;
    }
    writing = writing.eagerlyEvaluate([](kj::Exception&&) {});
    auto response = req.response.wait(io_.waitScope);
    HttpResult out;
    out.status = response.statusCode;
    response.headers->forEach([&](kj::StringPtr name, kj::StringPtr value) {
      out.headers[lower(name.cStr())] = value.cStr();
    });
    auto body = response.body->readAllBytes().wait(io_.waitScope);
    out.body.assign(body.asChars().begin(), body.size());
    return out;
  }

  HttpResult get(const std::string& url) { return call({HttpMethod::GET, url}); }
  HttpResult post(const std::string& url, const std::string& body, bool json = false) {
    Request r{HttpMethod::POST, url, body};
    if (json) r.headers.emplace_back("Content-Type", "application/json");
    return call(r);
  }

  // The "error" of an error body, checking it is the gateway's JSON.
  std::string error_of(const HttpResult& r) {
    EXPECT_EQ(r.header("content-type"), "application/json") << r.body;
    capnp::MallocMessageBuilder m;
    auto v = m.initRoot<capnp::JsonValue>();
    codec_->decodeRaw(kj::arrayPtr(r.body.data(), r.body.size()), v);
    EXPECT_TRUE(v.isObject()) << r.body;
    if (!v.isObject() || v.getObject().size() != 1) return "";
    EXPECT_EQ(std::string(v.getObject()[0].getName().cStr()), "error");
    return v.getObject()[0].getValue().getString().cStr();
  }

  template <typename T>
  typename T::Reader decode(const HttpResult& r, capnp::MallocMessageBuilder& m) {
    auto root = m.initRoot<T>();
    codec_->decode(kj::arrayPtr(r.body.data(), r.body.size()), capnp::toDynamic(root));
    return root.asReader();
  }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  FakeWispState state_;
  std::string token_;
  uint64_t max_payload_ = 0;
  uint64_t max_json_ = 0;
  kj::Own<Gateway> gateway_;
  kj::HttpHeaderTable client_table_;
  kj::Own<capnp::JsonCodec> codec_ = make_codec();
};

TEST_F(GatewayTest, InvokeRawPayloadGivesStdoutAndHeaders) {
  HttpResult r = post("/v1/templates/echo/invoke", "hello");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.header("wisp-exit-code"), "3");
  EXPECT_FALSE(r.has("wisp-signal"));
  EXPECT_FALSE(r.has("wisp-limit"));
  auto err = decode_base64(r.header("wisp-stderr"));
  EXPECT_FALSE(err.hadErrors);
  EXPECT_EQ(std::string(err.asChars().begin(), err.size()), "err:hello");
  capnp::MallocMessageBuilder m;
  auto t = m.initRoot<api::serve::Timings>();
  std::string timings = r.header("wisp-timings");
  codec_->decode(kj::arrayPtr(timings.data(), timings.size()), capnp::toDynamic(t));
  EXPECT_EQ(t.getRestoreMs(), 3.5);
  EXPECT_EQ(t.getTotalMs(), 7.0);
  EXPECT_TRUE(t.getPooled());
  EXPECT_TRUE(t.getCriuFallback());
  EXPECT_EQ(t.getBootMs(), 40.5);
  EXPECT_EQ(t.getCriuRestoreMs(), 12.25);
  EXPECT_EQ(std::string(t.getCriuSource().cStr()), "drive");
  EXPECT_NE(timings.find("\"criuFallback\":true"), std::string::npos) << timings;
  EXPECT_EQ(state_.invokes, 1);
  EXPECT_EQ(state_.last_template, "echo");
  EXPECT_EQ(state_.last_payload, "hello");
  EXPECT_EQ(state_.last_timeout_ms, 30000u);  // the schema's default
}

TEST_F(GatewayTest, InvokeRawBinaryAndEmptyPayloads) {
  std::string payload;
  for (int i = 0; i < 256; ++i) payload += static_cast<char>(i);
  HttpResult r = post("/v1/templates/echo/invoke", payload);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, payload);
  r = post("/v1/templates/echo/invoke", "");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(state_.last_payload, "");
  Request chunked{HttpMethod::POST, "/v1/templates/echo/invoke", std::string(200000, 'x')};
  chunked.chunked = true;
  r = call(chunked);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body.size(), 200000u);
}

TEST_F(GatewayTest, InvokeOutcomesMapToStatuses) {
  HttpResult r = post("/v1/templates/slow/invoke", "x");
  EXPECT_EQ(r.status, 504u);
  r = post("/v1/templates/oom/invoke", "x");
  EXPECT_EQ(r.status, 422u);
  EXPECT_EQ(r.header("wisp-limit"), "memory");
  r = post("/v1/templates/signal/invoke", "x");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("wisp-signal"), "9");
  EXPECT_FALSE(r.has("wisp-exit-code"));
  r = post("/v1/templates/broken/invoke", "x");
  EXPECT_EQ(r.status, 500u);
  EXPECT_EQ(error_of(r), "handler-error: exec: no such file");
}

TEST_F(GatewayTest, ApiErrorsMapToStatusesWithJsonBodies) {
  struct Case {
    const char* name;
    unsigned status;
    const char* error_prefix;
  };
  for (const Case& c : {Case{"busy", 429, "overloaded: "}, Case{"drain", 503, "draining: "},
                        Case{"crash", 502, "vm-failed: the VMM died; log tail: boom"},
                        Case{"remote", 404, "not-found: template remote"},
                        Case{"gone", 502, "vm-failed: "}, Case{"nope", 404, "not-found: "}}) {
    HttpResult r = post(std::string("/v1/templates/") + c.name + "/invoke", "x");
    EXPECT_EQ(r.status, c.status) << c.name;
    EXPECT_EQ(error_of(r).rfind(c.error_prefix, 0), 0u) << c.name << ": " << r.body;
  }
}

TEST_F(GatewayTest, StderrHeaderCarriesTheFirst8KiB) {
  HttpResult r = post("/v1/templates/big/invoke", "");
  EXPECT_EQ(r.status, 200u);
  auto err = decode_base64(r.header("wisp-stderr"));
  EXPECT_EQ(err.size(), 8192u);
  // The JSON form carries all of it.
  r = post("/v1/templates/big/invoke", "{}", true);
  capnp::MallocMessageBuilder m;
  EXPECT_EQ(decode<api::serve::InvokeResponse>(r, m).getStderr().size(), 20u * 1024);
}

TEST_F(GatewayTest, InvokeJsonRoundTrip) {
  HttpResult r = post("/v1/templates/echo/invoke",
                      R"({"payload": "aGVsbG8=", "timeoutMs": 1234, "deadlineMs": "99"})", true);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(state_.last_payload, "hello");
  EXPECT_EQ(state_.last_timeout_ms, 1234u);
  EXPECT_EQ(state_.last_deadline_ms, 99u);
  capnp::MallocMessageBuilder m;
  auto resp = decode<api::serve::InvokeResponse>(r, m);
  EXPECT_EQ(string_of(resp.getStdout()), "hello");
  EXPECT_EQ(string_of(resp.getStderr()), "err:hello");
  EXPECT_TRUE(resp.isExitCode());
  EXPECT_EQ(resp.getExitCode(), 3);
  EXPECT_EQ(resp.getTimings().getReconnectMs(), 1.25);
  // The same status rules; the body still says everything.
  r = post("/v1/templates/slow/invoke", "{}", true);
  EXPECT_EQ(r.status, 504u);
  capnp::MallocMessageBuilder m2;
  EXPECT_TRUE(decode<api::serve::InvokeResponse>(r, m2).getTimedOut());
  // A charset parameter and another case are still JSON.
  Request req{HttpMethod::POST, "/v1/templates/echo/invoke", R"({"payload": "eHl6"})"};
  req.headers.emplace_back("Content-Type", "Application/JSON; charset=utf-8");
  r = call(req);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(state_.last_payload, "xyz");
}

TEST_F(GatewayTest, MalformedJsonIsABadRequest) {
  for (const char* body :
       {"{not json", "", "[1,2]", R"({"payload": 5})", R"({"bogus": 1})", R"({"payload": "!!!"})",
        R"({"timeoutMs": "ten"})", R"({"timeoutMs": -1})", "{\"payload\": \"aGk=\"}}}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}) {
    HttpResult r = post("/v1/templates/echo/invoke", body, true);
    EXPECT_EQ(r.status, 400u) << body << " -> " << r.body;
    EXPECT_EQ(error_of(r).rfind("bad-request: the request body is not valid JSON", 0), 0u)
        << r.body;
  }
  EXPECT_EQ(state_.invokes, 0);
}

TEST_F(GatewayTest, OversizedBodiesGet413BeforeTheCall) {
  // Declared over Wisp.maxPayloadBytes: refused before a byte of the body is read.
  Request r{HttpMethod::POST, "/v1/templates/echo/invoke"};
  r.declared_length = api::serve::Wisp::MAX_PAYLOAD_BYTES + 1;
  HttpResult res = call(r);
  EXPECT_EQ(res.status, 413u);
  EXPECT_EQ(error_of(res).rfind("too-large: the payload of 16777217 bytes", 0), 0u) << res.body;
  EXPECT_EQ(state_.invokes, 0);
}

TEST_F(GatewayTest, StreamedBodiesOverTheLimitGet413) {
  max_payload_ = 16;
  max_json_ = 64;
  Request r{HttpMethod::POST, "/v1/templates/echo/invoke", std::string(17, 'x')};
  r.chunked = true;  // no Content-Length: only the stream tells
  HttpResult res = call(r);
  EXPECT_EQ(res.status, 413u);
  EXPECT_EQ(error_of(res), "too-large: the payload is over 16 bytes");
  EXPECT_EQ(post("/v1/templates/echo/invoke", std::string(16, 'x')).status, 200u);
  // JSON: the body over its limit, and a payload within it that decodes over the payload's.
  res = post("/v1/templates/echo/invoke", R"({"payload": ")" + std::string(80, 'A') + "\"}", true);
  EXPECT_EQ(res.status, 413u);
  res = post("/v1/templates/echo/invoke", R"({"payload": "eHh4eHh4eHh4eHh4eHh4eHh4"})", true);
  EXPECT_EQ(res.status, 413u);
  EXPECT_EQ(error_of(res), "too-large: the payload is over 16 bytes");
  res = post("/v1/sandboxes/sb-1/exec", R"({"argv": ["a"], "stdin": "eHh4eHh4eHh4eHh4eHh4eHh4"})",
             true);
  EXPECT_EQ(res.status, 413u);
  EXPECT_EQ(state_.invokes, 1);
}

TEST_F(GatewayTest, BadNamesUnknownRoutesAndWrongMethods) {
  struct Case {
    HttpMethod method;
    std::string url;
    unsigned status;
  };
  std::vector<Case> cases = {
      {HttpMethod::POST, "/v1/templates/.hidden/invoke", 400},
      {HttpMethod::POST, "/v1/templates/" + std::string(65, 'a') + "/invoke", 400},
      {HttpMethod::POST, "/v1/templates/a%20b/invoke", 400},
      {HttpMethod::POST, "/v1/templates//invoke", 400},
      {HttpMethod::DELETE, "/v1/sandboxes/..", 400},
      {HttpMethod::POST, "/v1/sandboxes/a$b/exec", 400},
      {HttpMethod::GET, "/", 404},
      {HttpMethod::GET, "/v2/templates", 404},
      {HttpMethod::GET, "/v1/templates/", 404},
      {HttpMethod::GET, "/v1/templates/echo", 404},
      {HttpMethod::POST, "/v1/templates/echo/invoke/more", 404},
      {HttpMethod::GET, "/v1/sandboxes/sb-1/exec/x", 404},
      {HttpMethod::GET, "/healthz/", 404},
      {HttpMethod::GET, "/v1/templates/echo/invoke", 405},
      {HttpMethod::POST, "/healthz", 405},
      {HttpMethod::DELETE, "/metrics", 405},
      {HttpMethod::POST, "/v1/templates", 405},
      {HttpMethod::GET, "/v1/sandboxes", 405},
      {HttpMethod::PUT, "/v1/sandboxes/sb-1", 405},
      {HttpMethod::GET, "/v1/sandboxes/sb-1/exec", 405},
  };
  for (const Case& c : cases) {
    HttpResult r = call({c.method, c.url});
    EXPECT_EQ(r.status, c.status) << c.url;
    std::string e = error_of(r);
    EXPECT_FALSE(e.empty()) << c.url;
    if (c.status == 405) {
      EXPECT_FALSE(r.header("allow").empty()) << c.url;
    }
  }
  EXPECT_EQ(call({HttpMethod::PUT, "/v1/sandboxes/sb-1"}).header("allow"), "DELETE");
  // A query string is ignored.
  EXPECT_EQ(post("/v1/templates/echo/invoke?x=1", "q").status, 200u);
  EXPECT_EQ(state_.invokes, 1);
}

TEST_F(GatewayTest, ListTemplatesIsTheListResultsJson) {
  HttpResult r = get("/v1/templates");
  EXPECT_EQ(r.status, 200u);
  capnp::MallocMessageBuilder m;
  auto list = decode<api::serve::Templates::ListResults>(r, m).getTemplates();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(std::string(list[0].getName().cStr()), "echo");
  EXPECT_EQ(std::string(list[0].getArgv()[0].cStr()), "/bin/cat");
  EXPECT_EQ(list[0].getMemMib(), 256u);
  EXPECT_EQ(std::string(list[1].getMode().cStr()), "worker");
  EXPECT_EQ(list[1].getWarm(), 2u);
}

TEST_F(GatewayTest, CreateSandboxIsAlwaysDetached) {
  HttpResult r = post("/v1/sandboxes", R"({"template": "echo", "timeoutMs": 60000,
                                           "detached": false})",
                      true);
  EXPECT_EQ(r.status, 200u) << r.body;
  capnp::MallocMessageBuilder m;
  auto info = decode<api::serve::SandboxInfo>(r, m);
  EXPECT_EQ(std::string(info.getId().cStr()), "sb-1");
  EXPECT_EQ(std::string(info.getTemplate().cStr()), "echo");
  EXPECT_EQ(info.getExpiresUnixMs(), 61000);
  EXPECT_EQ(state_.created_template, "echo");
  EXPECT_EQ(state_.created_timeout_ms, 60000u);
  EXPECT_TRUE(state_.created_detached);
  // Without a Content-Type header the body is still the JSON params.
  r = post("/v1/sandboxes", R"({"template": "echo"})");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(state_.created_timeout_ms, 300000u);  // the schema's default: 5 minutes
}

TEST_F(GatewayTest, CreateSandboxErrors) {
  HttpResult r = post("/v1/sandboxes", R"({"timeoutMs": 5})", true);
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(error_of(r), "bad-request: \"template\": template name is empty");
  r = post("/v1/sandboxes", R"({"template": "../etc"})", true);
  EXPECT_EQ(r.status, 400u);
  r = post("/v1/sandboxes", R"({"template": "missing"})", true);
  EXPECT_EQ(r.status, 404u);
  r = post("/v1/sandboxes", "template=echo");
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(state_.creates, 0);
}

TEST_F(GatewayTest, ExecOnASandbox) {
  HttpResult r = post("/v1/sandboxes/sb-1/exec",
                      R"({"argv": ["echo", "hi"], "stdin": "eA==", "timeoutMs": 5000})", true);
  EXPECT_EQ(r.status, 200u) << r.body;
  capnp::MallocMessageBuilder m;
  auto resp = decode<api::serve::InvokeResponse>(r, m);
  EXPECT_EQ(string_of(resp.getStdout()), "echo hix");
  EXPECT_EQ(resp.getExitCode(), 0);
  EXPECT_EQ(state_.exec_argv, (std::vector<std::string>{"echo", "hi"}));
  EXPECT_EQ(state_.exec_stdin, "x");
  r = post("/v1/sandboxes/sb-2/exec", R"({"argv": ["true"]})", true);
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(error_of(r), "not-found: sandbox sb-2");
  r = post("/v1/sandboxes/sb-1/exec", R"({"argv": []})", true);
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(error_of(r), "bad-request: \"argv\" is empty");
  r = post("/v1/sandboxes/sb-1/exec", R"({"argv": "true"})", true);
  EXPECT_EQ(r.status, 400u);
}

TEST_F(GatewayTest, DeleteSandbox) {
  HttpResult r = call({HttpMethod::DELETE, "/v1/sandboxes/sb-1"});
  EXPECT_EQ(r.status, 204u);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(state_.kills, 1);
  r = call({HttpMethod::DELETE, "/v1/sandboxes/sb-9"});
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(state_.kills, 1);
}

TEST_F(GatewayTest, HealthzFollowsDraining) {
  HttpResult r = get("/healthz");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "ok\n");
  state_.draining = true;
  r = get("/healthz");
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(r.body, "draining\n");
}

TEST_F(GatewayTest, BearerTokenGuardsEverythingButHealthz) {
  token_ = "s3cret";
  HttpResult r = get("/v1/templates");
  EXPECT_EQ(r.status, 401u);
  EXPECT_EQ(r.header("www-authenticate"), "Bearer");
  EXPECT_EQ(error_of(r).rfind("unauthorized: ", 0), 0u);
  EXPECT_EQ(get("/no/such/route").status, 401u);  // routes cannot be probed without it
  EXPECT_EQ(get("/metrics").status, 401u);
  EXPECT_EQ(post("/v1/templates/echo/invoke", "x").status, 401u);
  EXPECT_EQ(state_.invokes, 0);
  for (const char* wrong : {"Bearer s3cre", "Bearer s3cret2", "bearer s3cret", "s3cret",
                            "Bearer  s3cret", "Basic czNjcmV0"}) {
    Request req{HttpMethod::GET, "/v1/templates"};
    req.headers.emplace_back("Authorization", wrong);
    EXPECT_EQ(call(req).status, 401u) << wrong;
  }
  Request ok{HttpMethod::POST, "/v1/templates/echo/invoke", "x"};
  ok.headers.emplace_back("Authorization", "Bearer s3cret");
  EXPECT_EQ(call(ok).status, 200u);
  EXPECT_EQ(get("/healthz").status, 200u);
}

TEST(BearerToken, ComparesWholeValues) {
  EXPECT_TRUE(bearer_token_matches(kj::StringPtr("Bearer abc"), "abc"));
  EXPECT_FALSE(bearer_token_matches(kj::StringPtr("Bearer ab"), "abc"));
  EXPECT_FALSE(bearer_token_matches(kj::StringPtr("Bearer abcd"), "abc"));
  EXPECT_FALSE(bearer_token_matches(nullptr, "abc"));
  EXPECT_FALSE(bearer_token_matches(kj::StringPtr("Bearer "), ""));
}

TEST_F(GatewayTest, ConnectionKeepsServingAfterErrors) {
  auto pipe = kj::newTwoWayPipe();
  auto served =
      gateway().serve_connection(kj::mv(pipe.ends[0])).eagerlyEvaluate([](kj::Exception&&) {});
  auto client = kj::newHttpClient(client_table_, *pipe.ends[1]);
  EXPECT_EQ(send_on(*client, {HttpMethod::POST, "/v1/templates/nope/invoke", "x"}).status, 404u);
  Request bad{HttpMethod::POST, "/v1/templates/echo/invoke", "{"};
  bad.headers.emplace_back("Content-Type", "application/json");
  EXPECT_EQ(send_on(*client, bad).status, 400u);
  EXPECT_EQ(send_on(*client, {HttpMethod::GET, "/v1/nothing"}).status, 404u);
  HttpResult r = send_on(*client, {HttpMethod::POST, "/v1/templates/echo/invoke", "again"});
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "again");
}

TEST_F(GatewayTest, GarbageRequestBytesGet400) {
  for (const char* garbage :
       {"GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        "POST /v1/templates/echo/invoke HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "\x01\x02\x03\r\n\r\n"}) {
    auto pipe = kj::newTwoWayPipe();
    auto served =
        gateway().serve_connection(kj::mv(pipe.ends[0])).eagerlyEvaluate([](kj::Exception&&) {});
    pipe.ends[1]->write(garbage, strlen(garbage)).wait(io_.waitScope);
    pipe.ends[1]->shutdownWrite();
    std::string reply = pipe.ends[1]->readAllText().wait(io_.waitScope).cStr();
    // 400, or 501 for an unknown method, with the gateway's JSON error.
    bool bad = reply.rfind("HTTP/1.1 400", 0) == 0 || reply.rfind("HTTP/1.1 501", 0) == 0;
    EXPECT_TRUE(bad) << garbage << " -> " << reply;
    EXPECT_NE(reply.find("{\"error\":\"bad-request: the request could not be"), std::string::npos)
        << reply;
  }
  EXPECT_EQ(get("/healthz").status, 200u);  // still serving
}

TEST_F(GatewayTest, BodyThatCannotBeFramedGets400) {
  // Found by the fuzzer: a chunked body with a bad chunk size failed inside the body read.
  const char* bad_chunk =
      "POST /v1/templates/echo/invoke HTTP/1.1\r\nHost: h\r\n"
      "Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n";
  auto pipe = kj::newTwoWayPipe();
  auto served =
      gateway().serve_connection(kj::mv(pipe.ends[0])).eagerlyEvaluate([](kj::Exception&&) {});
  pipe.ends[1]->write(bad_chunk, strlen(bad_chunk)).wait(io_.waitScope);
  pipe.ends[1]->shutdownWrite();
  std::string reply = pipe.ends[1]->readAllText().wait(io_.waitScope).cStr();
  EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
  EXPECT_NE(reply.find("bad-request: the payload could not be read"), std::string::npos) << reply;
  EXPECT_EQ(state_.invokes, 0);
}

// ---- /metrics, parsed back ---------------------------------------------------------------

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

// Parses the text format 0.0.4 strictly enough to catch a malformed line: every sample's
// family has HELP and TYPE before it, label values are unescaped.
std::vector<Sample> parse_metrics(const std::string& text) {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
  std::regex value(R"(^([-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|\+Inf|-Inf|NaN)$)");
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      helped.insert(m[1]);
    } else if (std::regex_match(line, m, type)) {
      EXPECT_TRUE(helped.count(m[1])) << line;
      types[m[1]] = m[2];
    } else if (line.rfind("# ", 0) == 0) {
      // a comment
    } else if (std::regex_match(line, m, sample)) {
      Sample s{m[1], {}, m[4]};
      EXPECT_TRUE(std::regex_match(s.value, value)) << line;
      std::string family = s.name;
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        std::string sfx = suffix;
        if (!types.count(family) && family.size() > sfx.size() &&
            family.compare(family.size() - sfx.size(), sfx.size(), sfx) == 0)
          family = family.substr(0, family.size() - sfx.size());
      }
      EXPECT_TRUE(types.count(family)) << "no TYPE before " << line;
      // Labels: key="value" pairs, value escapes \\ \" \n.
      std::string l = m[3];
      size_t i = 0;
      while (i < l.size()) {
        size_t eq = l.find("=\"", i);
        if (eq == std::string::npos) {
          ADD_FAILURE() << line;
          break;
        }
        std::string key = l.substr(i, eq - i), val;
        size_t j = eq + 2;
        for (; j < l.size() && l[j] != '"'; ++j) {
          if (l[j] == '\\' && j + 1 < l.size()) {
            ++j;
            val += l[j] == 'n' ? '\n' : l[j];
          } else {
            EXPECT_NE(l[j], '\n');
            val += l[j];
          }
        }
        s.labels[key] = val;
        i = j + 1;
        if (i < l.size()) {
          EXPECT_EQ(l[i], ',') << line;
          ++i;
        }
      }
      samples.push_back(std::move(s));
    } else {
      ADD_FAILURE() << "not a text-format line: " << line;
    }
  }
  return samples;
}

const Sample* find(const std::vector<Sample>& samples, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (const Sample& s : samples)
    if (s.name == name && s.labels == labels) return &s;
  return nullptr;
}

TEST_F(GatewayTest, MetricsAreThePrometheusTextFormat) {
  HttpResult r = get("/metrics");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("content-type"), kMetricsContentType);
  std::vector<Sample> s = parse_metrics(r.body);
  auto value = [&](const std::string& name, const std::map<std::string, std::string>& labels) {
    const Sample* found = find(s, name, labels);
    EXPECT_NE(found, nullptr) << name;
    return found ? found->value : "";
  };
  EXPECT_EQ(value("wisp_invocations_total", {{"template", "echo"}, {"outcome", "ok"}}), "10");
  EXPECT_EQ(value("wisp_invocations_total", {{"template", "echo"}, {"outcome", "timeout"}}), "2");
  // A label value that needs escaping comes back whole.
  EXPECT_EQ(value("wisp_invocations_total",
                  {{"template", state_.odd_template}, {"outcome", "vm_failed"}}),
            "1");
  EXPECT_EQ(value("wisp_criu_fallbacks_total", {{"template", "echo"}}), "3");
  // A template without fallbacks has no sample (as a Prometheus counter not yet seen).
  EXPECT_EQ(find(s, "wisp_criu_fallbacks_total", {{"template", state_.odd_template}}), nullptr);
  EXPECT_EQ(value("wisp_warm_touched_pages_total", {{"template", "echo"}}), "4096");
  EXPECT_EQ(find(s, "wisp_warm_touched_pages_total", {{"template", state_.odd_template}}), nullptr);
  EXPECT_EQ(value("wisp_stage_duration_seconds_bucket", {{"stage", "restore"}, {"le", "0.001"}}),
            "1");
  EXPECT_EQ(value("wisp_stage_duration_seconds_bucket", {{"stage", "restore"}, {"le", "0.1"}}),
            "9");
  EXPECT_EQ(value("wisp_stage_duration_seconds_bucket", {{"stage", "total"}, {"le", "+Inf"}}),
            "12");
  EXPECT_EQ(value("wisp_stage_duration_seconds_sum", {{"stage", "total"}}), "0.375");
  EXPECT_EQ(value("wisp_stage_duration_seconds_count", {{"stage", "total"}}), "12");
  // The histogram that is not cumulative is left out.
  for (const Sample& x : s)
    EXPECT_NE(x.labels.count("stage") ? x.labels.at("stage") : "", "broken");
  EXPECT_EQ(value("wisp_vms_running", {}), "3");
  EXPECT_EQ(value("wisp_memory_committed_bytes", {}), "805306368");
  EXPECT_EQ(value("wisp_pool_idle", {}), "2");
  EXPECT_EQ(value("wisp_huge_page_layer_files", {}), "1");
  EXPECT_EQ(value("wisp_huge_page_layer_bytes", {}), std::to_string(12u << 20));
  EXPECT_EQ(value("wisp_pool_target", {}), "4");
  EXPECT_EQ(value("wisp_warm_clones_ready", {{"template", "echo"}}), "1");
  EXPECT_EQ(value("wisp_warm_clones_target", {{"template", "echo"}}), "2");
  EXPECT_EQ(value("wisp_draining", {}), "0");
}

TEST(MetricsText, FormatsAndEscapes) {
  EXPECT_EQ(format_sample(0.1), "0.1");
  EXPECT_EQ(format_sample(12), "12");
  EXPECT_EQ(format_sample(1e-9), "1e-09");
  EXPECT_EQ(format_sample(1.0 / 0.0), "+Inf");
  EXPECT_EQ(format_sample(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(format_sample(0.0 / 0.0), "NaN");
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

// ---- the mapping tables, directly ----------------------------------------------------------

TEST(ErrorStatus, FirstWordPicksTheStatus) {
  auto reply = [](const char* description, kj::Exception::Type type = kj::Exception::Type::FAILED) {
    return error_reply(kj::Exception(type, "f", 1, kj::str(description)));
  };
  EXPECT_EQ(reply("not-found: template x").status, 404u);
  EXPECT_EQ(reply("bad-request: name").status, 400u);
  EXPECT_EQ(reply("overloaded: full").status, 429u);
  EXPECT_EQ(reply("draining: bye").status, 503u);
  EXPECT_EQ(reply("vm-failed: died").status, 502u);
  EXPECT_EQ(reply("too-large: big").status, 413u);
  EXPECT_EQ(reply("remote exception: overloaded: full").status, 429u);
  EXPECT_EQ(reply("remote exception: overloaded: full").message, "overloaded: full");
  EXPECT_EQ(reply("something else: x").status, 500u);
  EXPECT_EQ(reply("something else: x").message, "internal: something else: x");
  EXPECT_EQ(reply("not-found").status, 500u);  // a word needs its ": "
  EXPECT_EQ(reply("lost", kj::Exception::Type::DISCONNECTED).status, 502u);
  EXPECT_EQ(reply("busy", kj::Exception::Type::OVERLOADED).status, 429u);
}

TEST(Route, NamesAndPaths) {
  EXPECT_EQ(template_name_problem("a.b-c_D9"), "");
  EXPECT_EQ(template_name_problem(std::string(64, 'a')), "");
  EXPECT_NE(template_name_problem(std::string(65, 'a')), "");
  EXPECT_NE(template_name_problem(".a"), "");
  EXPECT_NE(template_name_problem("a/b"), "");
  EXPECT_NE(template_name_problem(""), "");
  EXPECT_EQ(sandbox_id_problem(std::string(128, 'a')), "");
  EXPECT_NE(sandbox_id_problem(std::string(129, 'a')), "");
  RouteMatch m = match_route(HttpMethod::POST, "/v1/templates/fn/invoke?a=b");
  EXPECT_EQ(m.kind, RouteKind::kInvoke);
  EXPECT_EQ(m.name, "fn");
  m = match_route(HttpMethod::DELETE, "/v1/sandboxes/sb-1");
  EXPECT_EQ(m.kind, RouteKind::kDeleteSandbox);
  EXPECT_EQ(m.name, "sb-1");
  m = match_route(HttpMethod::POST, "/v1/sandboxes/sb-1/snapshot");
  EXPECT_EQ(m.kind, RouteKind::kSnapshotSandbox);
  EXPECT_EQ(m.name, "sb-1");
  m = match_route(HttpMethod::GET, "/v1/sandboxes/sb-1/snapshot");
  EXPECT_EQ(m.status, 405u);
  EXPECT_EQ(m.allow, "POST");
  EXPECT_EQ(match_route(HttpMethod::POST, "/v1/sandboxes/.x/snapshot").status, 400u);
  EXPECT_EQ(match_route(HttpMethod::POST, "/v1/sandboxes/sb-1/snapshots").status, 404u);
  EXPECT_EQ(match_route(HttpMethod::GET, "http://host/healthz").status, 404u);
  EXPECT_EQ(match_route(HttpMethod::GET, "").status, 404u);
}

// ---- serve_http: the entry point serve calls ------------------------------------------------

TEST(ServeHttp, ServesOnAUnixSocketMode0600) {
  auto io = kj::setupAsyncIo();
  FakeWispState state;
  char pattern[] = "/tmp/wisp-http-test.XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  std::string dir = pattern;
  std::string path = dir + "/http.sock";
  auto serving =
      serve_http(io, "unix:" + path, testutil::make_fake_wisp(state), {})
          .eagerlyEvaluate([](kj::Exception&& e) { ADD_FAILURE() << e.getDescription().cStr(); });
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto address =
      io.provider->getNetwork().parseAddress(("unix:" + path).c_str()).wait(io.waitScope);
  auto connection = address->connect().wait(io.waitScope);
  kj::HttpHeaderTable table;
  auto client = kj::newHttpClient(table, *connection);
  kj::HttpHeaders headers(table);
  auto body = kj::heap<std::string>("over unix");
  auto req = client->request(HttpMethod::POST, "/v1/templates/echo/invoke", headers,
                             uint64_t(body->size()));
  req.body->write(body->data(), body->size()).wait(io.waitScope);
  auto response = req.response.wait(io.waitScope);
  EXPECT_EQ(response.statusCode, 200u);
  EXPECT_EQ(std::string(response.body->readAllText().wait(io.waitScope).cStr()), "over unix");
  EXPECT_EQ(state.last_payload, "over unix");
  unlink(path.c_str());
  rmdir(dir.c_str());
}

TEST(ServeHttp, LoopbackWithATokenListens) {
  auto io = kj::setupAsyncIo();
  FakeWispState state;
  auto serving = serve_http(io, "127.0.0.1:0", testutil::make_fake_wisp(state), {"t"});
  auto serving6 = serve_http(io, "localhost:0", testutil::make_fake_wisp(state), {});
}

TEST(ServeHttp, RejectsBadAddressesAndOpenListenersWithoutAToken) {
  auto io = kj::setupAsyncIo();
  FakeWispState state;
  auto serve = [&](const std::string& address) {
    return [&io, &state, address] { serve_http(io, address, testutil::make_fake_wisp(state), {}); };
  };
  testutil::expect_error(serve("0.0.0.0:8080"), {"0.0.0.0:8080", "bearer token"});
  testutil::expect_error(serve("[::]:8080"), {"bearer token"});
  testutil::expect_error(serve("localhost"), {"HOST:PORT"});
  testutil::expect_error(serve("127.0.0.1:70000"), {"port"});
  testutil::expect_error(serve("127.0.0.1:http"), {"port"});
  testutil::expect_error(serve("unix:"), {"path is empty"});
  testutil::expect_error(serve("no-such-host.invalid:80"), {"no-such-host.invalid"});
  testutil::expect_error(serve("unix:/nonexistent-dir/x.sock"), {"cannot listen"});
}

TEST(LocalAddress, LoopbackAndUnixOnly) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(0x7f000001);
  EXPECT_TRUE(is_local_address(reinterpret_cast<sockaddr*>(&in)));
  in.sin_addr.s_addr = htonl(0x0a000001);
  EXPECT_FALSE(is_local_address(reinterpret_cast<sockaddr*>(&in)));
  in.sin_addr.s_addr = 0;
  EXPECT_FALSE(is_local_address(reinterpret_cast<sockaddr*>(&in)));
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_addr = in6addr_loopback;
  EXPECT_TRUE(is_local_address(reinterpret_cast<sockaddr*>(&in6)));
  in6.sin6_addr = in6addr_any;
  EXPECT_FALSE(is_local_address(reinterpret_cast<sockaddr*>(&in6)));
}

}  // namespace
}  // namespace wisp::http_gateway
