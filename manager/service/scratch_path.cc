#include "manager/service/scratch_path.h"

namespace wisp::service {

std::string scratch_path_problem(const std::string& path) {
  if (path.empty()) return "empty";
  if (path.size() > kMaxScratchPath)
    return "longer than " + std::to_string(kMaxScratchPath) + " bytes";
  if (path.find('\0') != std::string::npos) return "contains a NUL byte";
  if (path[0] == '/') return "absolute (it is relative to /scratch)";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part.empty()) return "has an empty component (//)";
    if (part == "." || part == "..") return "has a '" + part + "' component";
    start = end + 1;
  }
  return "";
}

}  // namespace wisp::service
