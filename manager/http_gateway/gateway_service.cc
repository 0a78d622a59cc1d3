#include "manager/http_gateway/gateway_service.h"

#include <capnp/message.h>
#include <kj/encoding.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "manager/http_gateway/error_status.h"
#include "manager/http_gateway/json_bodies.h"
#include "manager/http_gateway/metrics_text.h"
#include "manager/http_gateway/route.h"

namespace wisp::http_gateway {

// What the service answers: built by a route, sent by send().
struct GatewayService::Reply {
  unsigned status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones (Wisp-*, Allow)
};

namespace {

constexpr const char* kJsonType = "application/json";

// "application/json" or "application/json; charset=utf-8", in any case.
bool is_json(kj::Maybe<kj::StringPtr> content_type) {
  KJ_IF_MAYBE (t, content_type) {
    std::string v(t->cStr());
    v = v.substr(0, v.find(';'));
    while (!v.empty() && v.back() == ' ') v.pop_back();
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
    return v == kJsonType;
  }
  return false;
}

std::string as_string(kj::StringPtr s) { return std::string(s.cStr(), s.size()); }

}  // namespace

bool bearer_token_matches(kj::Maybe<kj::StringPtr> authorization, const std::string& token) {
  if (token.empty()) return false;
  const std::string expected = "Bearer " + token;
  std::string given;
  KJ_IF_MAYBE (a, authorization) {
    given = as_string(*a);
  }
  // Every byte of the expected value is compared, whatever the given value's length, so the
  // time taken says nothing about where they differ.
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(expected[i]);
  }
  return diff == 0;
}

GatewayService::GatewayService(const kj::HttpHeaderTable& table, api::serve::Wisp::Client wisp,
                               std::string token, Limits limits)
    : table_(table),
      wisp_(kj::mv(wisp)),
      token_(std::move(token)),
      limits_(limits),
      codec_(make_codec()),
      authorization_(KJ_REQUIRE_NONNULL(table.stringToId("Authorization"),
                                        "register_headers() was not called on the table")) {}

void GatewayService::register_headers(kj::HttpHeaderTable::Builder& builder) {
  builder.add("Authorization");
}

kj::Promise<void> GatewayService::request(kj::HttpMethod method, kj::StringPtr url,
                                          const kj::HttpHeaders& headers,
                                          kj::AsyncInputStream& body, Response& response) {
  return kj::evalNow([&] { return dispatch(method, url, headers, body); })
      .catch_([this](kj::Exception&& e) {
        ErrorReply r = error_reply(e);
        return error(r.status, r.message);
      })
      .then([this, &response](Reply reply) { return send(response, std::move(reply)); });
}

kj::Promise<void> GatewayService::handleClientProtocolError(kj::HttpHeaders::ProtocolError e,
                                                            Response& response) {
  // 400, or 501 for a method HTTP does not know.
  return send(response, error(e.statusCode, std::string("bad-request: the request could not be "
                                                        "parsed: ") +
                                                e.description.cStr()));
}

kj::Promise<void> GatewayService::handleApplicationError(kj::Exception e,
                                                         kj::Maybe<Response&> response) {
  // The service answers its own failures; what arrives here is kj-http failing to read the
  // request (its framing) or the client gone.
  if (e.getType() == kj::Exception::Type::DISCONNECTED) return kj::READY_NOW;
  KJ_IF_MAYBE (r, response) {
    return send(*r, error(400, std::string("bad-request: the request could not be read: ") +
                                   e.getDescription().cStr()));
  }
  return kj::READY_NOW;
}

kj::Promise<void> GatewayService::handleNoResponse(Response& response) {
  return send(response, error(500, "internal: no response was produced"));
}

kj::Promise<GatewayService::Reply> GatewayService::dispatch(kj::HttpMethod method,
                                                            kj::StringPtr url,
                                                            const kj::HttpHeaders& headers,
                                                            kj::AsyncInputStream& body) {
  // /healthz answers anyone (a load balancer's probe has no token); everything else, even a
  // path that does not exist, needs the token first, so routes cannot be probed without it.
  std::string_view path = url_path(std::string_view(url.cStr(), url.size()));
  if (!token_.empty() && path != "/healthz" &&
      !bearer_token_matches(headers.get(authorization_), token_)) {
    Reply r = error(401, "unauthorized: this endpoint needs \"Authorization: Bearer TOKEN\"");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  RouteMatch route = match_route(method, std::string_view(url.cStr(), url.size()));
  // Read before the body is: url and headers are invalid from the body's first read on.
  bool json = is_json(headers.get(kj::HttpHeaderId::CONTENT_TYPE));
  switch (route.kind) {
    case RouteKind::kNone: {
      Reply r = error(route.status, route.error);
      if (!route.allow.empty()) r.headers.emplace_back("Allow", route.allow);
      return r;
    }
    case RouteKind::kInvoke:
      return invoke(std::move(route.name), json, body);
    case RouteKind::kListTemplates:
      return list_templates();
    case RouteKind::kCreateSandbox:
      return create_sandbox(body);
    case RouteKind::kExecSandbox:
      return exec_sandbox(std::move(route.name), body);
    case RouteKind::kSnapshotSandbox:
      return snapshot_sandbox(std::move(route.name), body);
    case RouteKind::kDeleteSandbox:
      return delete_sandbox(std::move(route.name));
    case RouteKind::kHealthz:
      return healthz();
    case RouteKind::kMetrics:
      return metrics();
  }
  return error(500, "internal: unhandled route");
}

kj::Promise<GatewayService::Reply> GatewayService::invoke(std::string name, bool json,
                                                          kj::AsyncInputStream& body) {
  uint64_t limit = json ? limits_.max_json_bytes : limits_.max_payload_bytes;
  std::string what = json ? "the InvokeRequest body" : "the payload";
  return read_body(body, limit, what)
      .then([this, name = std::move(name), json](kj::Array<kj::byte> bytes) {
        auto req = wisp_.invokeRequest();
        req.setTemplate(name);
        if (json) {
          decode_json(*codec_, bytes, capnp::toDynamic(req.initRequest()), "the request body");
          if (req.getRequest().getPayload().size() > limits_.max_payload_bytes)
            fail("too-large",
                 "the payload is over " + std::to_string(limits_.max_payload_bytes) + " bytes");
        } else {
          req.initRequest().setPayload(bytes);
        }
        return req.send().then([this, json](capnp::Response<api::serve::Wisp::InvokeResults> r) {
          return invoke_reply(r.getResponse(), json);
        });
      });
}

GatewayService::Reply GatewayService::invoke_reply(api::serve::InvokeResponse::Reader r,
                                                   bool json) {
  Reply reply;
  // How it ended picks the status: 200 only when the handler ran to an exit code or a signal
  // of its own; the response still says everything in the JSON form.
  if (r.getTimedOut()) {
    reply.status = 504;
  } else if (r.hasLimitExceeded() && r.getLimitExceeded().size() > 0) {
    reply.status = 422;
  } else if (r.hasError() && r.getError().size() > 0) {
    reply.status = 500;
  }
  if (json) {
    kj::String text = codec_->encode(r);
    reply.content_type = kJsonType;
    reply.body.assign(text.cStr(), text.size());
    return reply;
  }
  if (reply.status == 500) {
    return error(500, std::string("handler-error: ") + r.getError().cStr());
  }
  reply.content_type = "application/octet-stream";
  auto out = r.getStdout();
  reply.body.assign(reinterpret_cast<const char*>(out.begin()), out.size());
  if (r.isExitCode()) {
    reply.headers.emplace_back(kExitCodeHeader, std::to_string(r.getExitCode()));
  } else {
    reply.headers.emplace_back(kSignalHeader, std::to_string(r.getSignal()));
  }
  kj::String timings = codec_->encode(r.getTimings());
  reply.headers.emplace_back(kTimingsHeader, as_string(timings));
  auto err = r.getStderr();
  kj::String err64 =
      kj::encodeBase64(err.slice(0, std::min<size_t>(err.size(), kStderrHeaderBytes)));
  reply.headers.emplace_back(kStderrHeader, as_string(err64));
  if (reply.status == 422) {
    std::string limit = as_string(r.getLimitExceeded());
    if (!kj::HttpHeaders::isValidHeaderValue(limit.c_str())) limit = "unknown";
    reply.headers.emplace_back(kLimitHeader, limit);
  }
  if (r.getOutputTruncated()) reply.headers.emplace_back(kTruncatedHeader, "1");
  return reply;
}

kj::Promise<GatewayService::Reply> GatewayService::list_templates() {
  auto templates = wisp_.templatesRequest().send().getTemplates();
  return templates.listRequest().send().then(
      [this](capnp::Response<api::serve::Templates::ListResults> r) {
        return json_reply(200, codec_->encode(api::serve::Templates::ListResults::Reader(r)));
      });
}

kj::Promise<GatewayService::Reply> GatewayService::create_sandbox(kj::AsyncInputStream& body) {
  return read_body(body, limits_.max_json_bytes, "the sandbox request body")
      .then([this](kj::Array<kj::byte> bytes) {
        auto sandboxes = wisp_.sandboxesRequest().send().getSandboxes();
        auto req = sandboxes.createRequest();
        decode_json(*codec_, bytes,
                    capnp::toDynamic(api::serve::Sandboxes::CreateParams::Builder(req)),
                    "the request body");
        std::string name = as_string(req.getTemplate());
        if (std::string problem = template_name_problem(name); !problem.empty())
          fail("bad-request", "\"template\": " + problem);
        // The gateway reaches sandboxes by id only: none may end when this call's capability
        // is dropped.
        req.setDetached(true);
        return req.send().then([this](capnp::Response<api::serve::Sandboxes::CreateResults> r) {
          return json_reply(200, codec_->encode(r.getInfo()));
        });
      });
}

kj::Promise<GatewayService::Reply> GatewayService::exec_sandbox(std::string id,
                                                                kj::AsyncInputStream& body) {
  return read_body(body, limits_.max_json_bytes, "the ExecRequest body")
      .then([this, id = std::move(id)](kj::Array<kj::byte> bytes) {
        // The body is checked before the sandbox is looked up: a bad request is a 400 whether
        // or not the sandbox exists.
        capnp::MallocMessageBuilder message;
        auto request = message.initRoot<api::serve::ExecRequest>();
        decode_json(*codec_, bytes, capnp::toDynamic(request), "the request body");
        if (request.getArgv().size() == 0) fail("bad-request", "\"argv\" is empty");
        if (request.getStdin().size() > limits_.max_payload_bytes)
          fail("too-large",
               "\"stdin\" is over " + std::to_string(limits_.max_payload_bytes) + " bytes");
        auto get = wisp_.sandboxesRequest().send().getSandboxes().getRequest();
        get.setId(id);
        auto req = get.send().getSandbox().execRequest();
        req.setRequest(request.asReader());
        return req.send().then([this](capnp::Response<api::serve::Sandbox::ExecResults> r) {
          return invoke_reply(r.getResponse(), true);
        });
      });
}

kj::Promise<GatewayService::Reply> GatewayService::snapshot_sandbox(std::string id,
                                                                    kj::AsyncInputStream& body) {
  return read_body(body, limits_.max_json_bytes, "the snapshot request body")
      .then([this, id = std::move(id)](kj::Array<kj::byte> bytes) {
        // {"name": "..."}: the body is checked before the sandbox is looked up.
        capnp::MallocMessageBuilder message;
        auto params = message.initRoot<api::serve::Sandbox::SnapshotParams>();
        decode_json(*codec_, bytes, capnp::toDynamic(params), "the request body");
        std::string name = as_string(params.getName());
        if (std::string problem = template_name_problem(name); !problem.empty())
          fail("bad-request", "\"name\": " + problem);
        auto get = wisp_.sandboxesRequest().send().getSandboxes().getRequest();
        get.setId(id);
        auto req = get.send().getSandbox().snapshotRequest();
        req.setName(name);
        return req.send().then([this](capnp::Response<api::serve::Sandbox::SnapshotResults> r) {
          return json_reply(200, codec_->encode(r.getTemplate()));
        });
      });
}

kj::Promise<GatewayService::Reply> GatewayService::delete_sandbox(std::string id) {
  auto get = wisp_.sandboxesRequest().send().getSandboxes().getRequest();
  get.setId(id);
  return get.send().getSandbox().killRequest().send().then(
      [](capnp::Response<api::serve::Sandbox::KillResults>) {
        Reply r;
        r.status = 204;
        return r;
      });
}

kj::Promise<GatewayService::Reply> GatewayService::healthz() {
  return wisp_.versionRequest().send().then(
      [](capnp::Response<api::serve::Wisp::VersionResults> r) {
        Reply reply;
        reply.content_type = "text/plain; charset=utf-8";
        bool draining = r.getInfo().getDraining();
        reply.status = draining ? 503 : 200;
        reply.body = draining ? "draining\n" : "ok\n";
        return reply;
      },
      [this](kj::Exception&& e) {
        // A service that cannot answer is not healthy, whatever the error was.
        return error(503, error_reply(e).message);
      });
}

kj::Promise<GatewayService::Reply> GatewayService::metrics() {
  return wisp_.statsRequest().send().then([](capnp::Response<api::serve::Wisp::StatsResults> r) {
    Reply reply;
    reply.content_type = kMetricsContentType;
    reply.body = render_metrics(r.getStats());
    return reply;
  });
}

GatewayService::Reply GatewayService::json_reply(unsigned status, kj::String json) {
  Reply r;
  r.status = status;
  r.content_type = kJsonType;
  r.body.assign(json.cStr(), json.size());
  return r;
}

GatewayService::Reply GatewayService::error(unsigned status, const std::string& message) {
  Reply r;
  r.status = status;
  r.content_type = kJsonType;
  r.body = error_json(*codec_, message) + "\n";
  return r;
}

kj::Promise<void> GatewayService::send(Response& response, Reply reply) {
  kj::HttpHeaders headers(table_);
  if (!reply.content_type.empty())
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, reply.content_type.c_str());
  for (auto& [name, value] : reply.headers) headers.add(name.c_str(), value.c_str());
  auto out = response.send(reply.status, status_text(reply.status), headers, reply.body.size());
  if (reply.body.empty()) return kj::READY_NOW;
  auto body = kj::heap<std::string>(std::move(reply.body));
  auto write = out->write(body->data(), body->size());
  return write.attach(kj::mv(out), kj::mv(body));
}

}  // namespace wisp::http_gateway
