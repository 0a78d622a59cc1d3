// What the shim takes from the bundle's OCI runtime spec (config.json, written by containerd):
// the container process's args, env and cwd, and which wisp template runs it. config.json is
// host input from containerd, but a bundle is built from an image's config, so it is treated
// as untrusted: size-capped, and every field checked for its type with an error naming it.
#pragma once

#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wisp::shim {

struct OciProcess {
  std::vector<std::string> args;  // process.args: at least one
  std::vector<std::string> env;   // process.env: "KEY=value"
  std::string cwd;                // process.cwd
  // process.consoleSize (for a process on a terminal): its initial size; 0 when absent.
  uint16_t console_width = 0;
  uint16_t console_height = 0;
  // annotations["io.wisp.template"]: the template whose sandbox runs the process ("" if none).
  std::string template_name;
  // annotations["io.wisp.checkpoint"]: start from this checkpoint (a template Task.Checkpoint
  // made: shim/checkpoint_record.h), as from containerd's checkpoint image ("" if none).
  std::string checkpoint_template;
};

constexpr const char* kTemplateAnnotation = "io.wisp.template";
// For clients that cannot pass containerd's checkpoint image to Create (ctr 1.6's `run` has
// no --checkpoint): the checkpoint's template name, from its record.
constexpr const char* kCheckpointAnnotation = "io.wisp.checkpoint";

// config.json's text decoded into `message` (at most 4 MiB, nesting depth 32, `\u` escapes
// rewritten first: base/json_unicode.h); its root, whatever JSON value it is. Throws
// wisp::Error ("config.json: ...") for text over the limit or not JSON. Shared by the readers
// of the spec (this one and oci_sandbox.h).
capnp::JsonValue::Reader decode_config_json(const std::string& config_json,
                                            capnp::MallocMessageBuilder& message);
// The member `name` of a JSON object (none when absent or `object` is not an object).
kj::Maybe<capnp::JsonValue::Reader> json_member(capnp::JsonValue::Reader object,
                                                kj::StringPtr name);

// Parses config.json's text. Throws wisp::Error naming the field and what is wrong.
OciProcess parse_oci_process(const std::string& config_json);

// Reads <bundle>/config.json (at most 4 MiB) and parses it.
OciProcess read_oci_process(const std::string& bundle);

}  // namespace wisp::shim
