// Splitting a line of text at a separator, and finding a key's number in flat-keyed text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace wisp {

// Every field between separators, empty ones included: "a,,b" is {"a", "", "b"}, "" is {""}.
std::vector<std::string> split(const std::string& text, char sep);

// The number after `key` and a space at the start of a line of `text` ("oom_kill 3" in a
// cgroup's memory.events; with key "HugePages_Free:", /proc/meminfo's line), or nothing when
// no line starts so.
std::optional<uint64_t> find_keyed_value(const std::string& text, const std::string& key);
// The same, 0 when no line starts so (a counter a kernel leaves out until it counts).
uint64_t keyed_value(const std::string& text, const std::string& key);

}  // namespace wisp
