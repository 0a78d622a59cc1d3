#include "manager/http_gateway/route.h"

#include <vector>

namespace wisp::http_gateway {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  // path starts with '/': each segment follows one '/'; "" segments stay, and match nothing.
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    parts.push_back(path.substr(pos, next - pos));
    pos = next + 1;
  }
  return parts;
}

std::string name_problem(std::string_view what, std::string_view name, size_t max_len) {
  if (name.empty()) return std::string(what) + " is empty";
  if (name.size() > max_len)
    return std::string(what) + " is longer than " + std::to_string(max_len) + " characters";
  if (name[0] == '.') return std::string(what) + " starts with '.'";
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return std::string(what) + " has a character outside [A-Za-z0-9._-]";
  }
  return "";
}

RouteMatch not_found(std::string_view path) {
  RouteMatch m;
  m.status = 404;
  m.error = "not-found: no route " + std::string(path.substr(0, 200));
  return m;
}

RouteMatch wrong_method(kj::HttpMethod method, std::string_view allow) {
  RouteMatch m;
  m.status = 405;
  m.error = std::string("bad-request: method ") + kj::str(method).cStr() +
            " is not allowed here (allowed: " + std::string(allow) + ")";
  m.allow = allow;
  return m;
}

RouteMatch bad_name(std::string problem) {
  RouteMatch m;
  m.status = 400;
  m.error = "bad-request: " + problem;
  return m;
}

// The route `kind` when `method` is `want`, else 405.
RouteMatch only(kj::HttpMethod method, kj::HttpMethod want, RouteKind kind, std::string name = "") {
  if (method != want) return wrong_method(method, kj::str(want).cStr());
  RouteMatch m;
  m.kind = kind;
  m.name = std::move(name);
  return m;
}

}  // namespace

std::string_view url_path(std::string_view url) {
  size_t q = url.find_first_of("?#");
  return q == std::string_view::npos ? url : url.substr(0, q);
}

std::string template_name_problem(std::string_view name) {
  return name_problem("template name", name, 64);
}

std::string sandbox_id_problem(std::string_view id) { return name_problem("sandbox id", id, 128); }

RouteMatch match_route(kj::HttpMethod method, std::string_view url) {
  std::string_view path = url_path(url);
  if (path.empty() || path[0] != '/') return not_found(path);
  std::vector<std::string_view> p = split_path(path);
  using M = kj::HttpMethod;
  if (p.size() == 1 && p[0] == "healthz") return only(method, M::GET, RouteKind::kHealthz);
  if (p.size() == 1 && p[0] == "metrics") return only(method, M::GET, RouteKind::kMetrics);
  if (p.size() < 2 || p[0] != "v1") return not_found(path);
  if (p[1] == "templates") {
    if (p.size() == 2) return only(method, M::GET, RouteKind::kListTemplates);
    if (p.size() == 4 && p[3] == "invoke") {
      if (method != M::POST) return wrong_method(method, "POST");
      if (std::string problem = template_name_problem(p[2]); !problem.empty())
        return bad_name(problem);
      return only(method, M::POST, RouteKind::kInvoke, std::string(p[2]));
    }
    return not_found(path);
  }
  if (p[1] == "sandboxes") {
    if (p.size() == 2) return only(method, M::POST, RouteKind::kCreateSandbox);
    bool exec = p.size() == 4 && p[3] == "exec", snapshot = p.size() == 4 && p[3] == "snapshot";
    if (p.size() != 3 && !exec && !snapshot) return not_found(path);
    M want = p.size() == 4 ? M::POST : M::DELETE;
    if (method != want) return wrong_method(method, kj::str(want).cStr());
    if (std::string problem = sandbox_id_problem(p[2]); !problem.empty()) return bad_name(problem);
    RouteKind kind = exec       ? RouteKind::kExecSandbox
                     : snapshot ? RouteKind::kSnapshotSandbox
                                : RouteKind::kDeleteSandbox;
    return only(method, want, kind, std::string(p[2]));
  }
  return not_found(path);
}

}  // namespace wisp::http_gateway
