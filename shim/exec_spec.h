// The process of an Exec request (ExecProcessRequest.spec): containerd sends the OCI runtime
// spec's Process object as JSON in a typeurl Any ("types.containerd.io/opencontainers/
// runtime-spec/1/Process"). Untrusted like config.json: read by the same checks
// (shim/oci_process.h), with errors that name the exec spec's field.
#pragma once

#include <string>

#include "shim/oci_process.h"

namespace wisp::shim {

constexpr const char* kProcessTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process";

// Throws wisp::Error naming the field and what is wrong (also for another type_url).
OciProcess parse_exec_spec(const std::string& type_url, const std::string& json);

}  // namespace wisp::shim
