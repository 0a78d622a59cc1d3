// `wisp serve --warm NAME=N`'s value.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace wisp::service {

inline constexpr uint32_t kMaxWarmPerTemplate = 1024;

// Adds NAME -> N to `out` (a repeated NAME is replaced). Throws wisp::Error saying what is
// wrong: no '=', a bad template name, N not 1..kMaxWarmPerTemplate.
void parse_warm_option(const std::string& value, std::map<std::string, uint32_t>* out);

}  // namespace wisp::service
