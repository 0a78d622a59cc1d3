// capnp 0.9's JSON decoder (Debian 12's) decodes a \uXXXX escape wrongly: "\u003e" becomes
// "4", "\u00e9" "I". JSON writers escape that way as a matter of course (Go's encoding/json
// escapes <, > and &; Python's json.dumps every non-ASCII character), so JSON from outside is
// passed through this first: the escapes rewritten as the UTF-8 they stand for.
#pragma once

#include <string>

namespace wisp {

// `json` with every \uXXXX escape inside strings rewritten as the UTF-8 it stands for (valid
// JSON still; the escapes JSON requires, such as \u0022 and \u000a, get their short forms).
// Throws Error "WHAT: ..." for a malformed escape, a lone UTF-16 surrogate, or a control
// character with no short form.
std::string unescape_json_unicode(const std::string& json, const std::string& what);

}  // namespace wisp
