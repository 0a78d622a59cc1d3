// How an exception from the Wisp API becomes an HTTP status. api/wisp.capnp's errors start
// with a stable word ("not-found: ...", "overloaded: ..."), and that word alone picks the
// status; the gateway's own errors (bad JSON, a body over the limit) use the same words so one
// table covers both.
#pragma once

#include <kj/exception.h>

#include <string>

namespace wisp::http_gateway {

struct ErrorReply {
  unsigned status;
  std::string message;  // the description for the client, without RPC's "remote exception: "
};

// Maps by the description's first word; kj exception types with no word: DISCONNECTED (the
// serve side of the capability went away) 502, OVERLOADED 429, others 500.
ErrorReply error_reply(const kj::Exception& e);

// The status for an error word ("not-found" -> 404), 500 for a word it does not know.
unsigned status_for_word(const std::string& word);

// A kj exception whose description is "WORD: message", for the gateway's own errors, so they
// take the same path as the API's.
[[noreturn]] void fail(const char* word, const std::string& message);

// The reason phrase of the statuses the gateway sends.
const char* status_text(unsigned status);

}  // namespace wisp::http_gateway
