#include "base/split.h"

#include <cstdlib>

namespace wisp {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t end = text.find(sep, start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

std::optional<uint64_t> find_keyed_value(const std::string& text, const std::string& key) {
  std::string needle = key + " ";
  size_t pos = 0;
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      return strtoull(text.c_str() + pos + needle.size(), nullptr, 10);
    }
    pos += needle.size();
  }
  return std::nullopt;
}

uint64_t keyed_value(const std::string& text, const std::string& key) {
  return find_keyed_value(text, key).value_or(0);
}

}  // namespace wisp
