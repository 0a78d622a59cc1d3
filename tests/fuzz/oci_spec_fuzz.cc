// Fuzzes the OCI spec text the shim reads from containerd (untrusted: a bundle is built from an
// image's config): config.json (shim/oci_process.h) and an Exec request's Process object
// (shim/exec_spec.h, which wraps it into a spec). Each must parse or throw wisp::Error, never
// crash; a parse yields at least one argument, and an exec spec names no template.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "shim/exec_spec.h"
#include "shim/oci_process.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto p = wisp::shim::parse_oci_process(text);
    if (p.args.empty()) abort();
  } catch (const wisp::Error&) {
  }
  try {
    auto p = wisp::shim::parse_exec_spec(wisp::shim::kProcessTypeUrl, text);
    if (p.args.empty() || !p.template_name.empty()) abort();
  } catch (const wisp::Error&) {
  }
  return 0;
}
