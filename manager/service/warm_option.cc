#include "manager/service/warm_option.h"

#include "base/error.h"
#include "manager/template_store.h"

namespace wisp::service {

void parse_warm_option(const std::string& value, std::map<std::string, uint32_t>* out) {
  size_t eq = value.rfind('=');
  if (eq == std::string::npos) throw Error("expected NAME=N (e.g. hello=4)");
  std::string name = value.substr(0, eq);
  std::string n = value.substr(eq + 1);
  manager::check_template_name(name);
  uint64_t count = 0;
  bool ok = !n.empty() && n.size() <= 5;
  for (char c : n) {
    if (c < '0' || c > '9') ok = false;
    if (ok) count = count * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!ok || count < 1 || count > kMaxWarmPerTemplate)
    throw Error("N '" + n + "': expected a count from 1 to " + std::to_string(kMaxWarmPerTemplate));
  (*out)[name] = static_cast<uint32_t>(count);
}

}  // namespace wisp::service
