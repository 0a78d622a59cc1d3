// After `wisp invoke` fell back to a template's CRIU image (its VM snapshot did not fit this
// host), the snapshot is re-made for this host by a detached `wisp template rebuild` child, so
// the answer is not delayed and the next call is warm again (manager/template_rebuild.h).
#pragma once

#include <string>

namespace wisp::cli {

// Starts `wisp template rebuild NAME --if-generation GENERATION --skip-if-busy` in a session of
// its own (a terminal's signals do not reach it), stdin /dev/null, stdout and stderr to
// manager::rebuild_log_path(NAME); not waited for. Returns "" or why it could not be started.
std::string start_background_rebuild(const std::string& name, const std::string& generation);

}  // namespace wisp::cli
