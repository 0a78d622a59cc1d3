// Splitting a line of text at a separator.
#pragma once

#include <string>
#include <vector>

namespace wisp {

// Every field between separators, empty ones included: "a,,b" is {"a", "", "b"}, "" is {""}.
std::vector<std::string> split(const std::string& text, char sep);

}  // namespace wisp
