#include "shim/exec_spec.h"

#include "base/error.h"

namespace wisp::shim {

OciProcess parse_exec_spec(const std::string& type_url, const std::string& json) {
  if (type_url != kProcessTypeUrl) {
    throw Error("exec spec: type " + type_url.substr(0, 128) + ": expected " + kProcessTypeUrl);
  }
  // The Process object is config.json's "process": parsed as a spec holding only it, so one
  // parser checks both. Its error messages name config.json; here they name the exec spec.
  try {
    OciProcess p = parse_oci_process("{\"process\": " + json + "}");
    p.template_name.clear();  // an exec runs in its task's sandbox
    return p;
  } catch (const Error& e) {
    std::string message = e.what();
    const std::string prefix = "config.json: ";
    if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
    throw Error("exec spec: " + message);
  }
}

}  // namespace wisp::shim
