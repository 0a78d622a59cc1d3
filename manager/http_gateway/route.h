// Which route an HTTP request names: the method and path mapped to one of the gateway's
// endpoints, or the HTTP error a client gets for a path or method the gateway does not serve.
// Pure (no I/O), so the routing table is unit-tested and fuzzed on its own.
#pragma once

#include <kj/compat/http.h>

#include <string>
#include <string_view>

namespace wisp::http_gateway {

enum class RouteKind {
  kNone,             // no route: see RouteMatch::status
  kInvoke,           // POST /v1/templates/{name}/invoke
  kListTemplates,    // GET /v1/templates
  kCreateSandbox,    // POST /v1/sandboxes
  kExecSandbox,      // POST /v1/sandboxes/{id}/exec
  kSnapshotSandbox,  // POST /v1/sandboxes/{id}/snapshot
  kDeleteSandbox,    // DELETE /v1/sandboxes/{id}
  kHealthz,          // GET /healthz
  kMetrics,          // GET /metrics
};

struct RouteMatch {
  RouteKind kind = RouteKind::kNone;
  std::string name;     // the template name or sandbox id of the path, validated
  unsigned status = 0;  // kNone: 404 (no such path), 405 (wrong method), 400 (bad name)
  std::string error;    // kNone: what was wrong, for the client
  std::string allow;    // 405: the methods the path takes (the Allow header)
};

// `url` is the request target as kj-http gives it (a path, maybe with "?query", ignored).
RouteMatch match_route(kj::HttpMethod method, std::string_view url);

// The path of `url` without its query ("/v1/templates?x" -> "/v1/templates").
std::string_view url_path(std::string_view url);

// Template names (api/wisp.capnp): 1..64 of [A-Za-z0-9._-], not starting with '.'. Returns ""
// when valid, else what is wrong.
std::string template_name_problem(std::string_view name);

// Sandbox ids serve hands out: 1..128 of [A-Za-z0-9._-], not starting with '.'.
std::string sandbox_id_problem(std::string_view id);

}  // namespace wisp::http_gateway
