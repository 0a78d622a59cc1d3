#include "shim/socket_address.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <vector>

#include "base/error.h"
#include "base/hex.h"

namespace wisp::shim {

std::string clean_path(std::string_view path) {
  if (path.empty()) return ".";
  bool rooted = path[0] == '/';
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(pos, end - pos);
    pos = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!rooted) {
        parts.push_back(part);  // a relative path keeps its leading ".."; "/.." is "/"
      }
      continue;
    }
    parts.push_back(part);
  }
  std::string out = rooted ? "/" : "";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  return out.empty() ? "." : out;
}

std::string join_path(std::initializer_list<std::string_view> parts) {
  std::string joined;
  for (std::string_view p : parts) {
    if (p.empty()) continue;
    if (!joined.empty()) joined += '/';
    joined += p;
  }
  return joined.empty() ? "" : clean_path(joined);
}

std::string socket_root() {
  const char* root = std::getenv("WISP_SHIM_SOCKET_ROOT");
  return root != nullptr && *root != '\0' ? root : "/run/containerd";
}

std::string socket_address(const std::string& root, const std::string& containerd_address,
                           const std::string& ns, const std::string& id) {
  std::string key = join_path({containerd_address, ns, id});
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(key.data(), key.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    throw Error("shim: sha256 of the socket key failed (libcrypto)");
  }
  return "unix://" + join_path({root, "s"}) + "/" + hex_bytes({digest, size});
}

std::string socket_path(const std::string& address) {
  constexpr std::string_view kScheme = "unix://";
  if (address.compare(0, kScheme.size(), kScheme) == 0) return address.substr(kScheme.size());
  return address;
}

}  // namespace wisp::shim
