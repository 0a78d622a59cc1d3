#include "shim/oci_process.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file_io.h"
#include "base/json_unicode.h"
#include "shim/checkpoint_record.h"

namespace wisp::shim {

namespace {

using capnp::JsonValue;

constexpr size_t kMaxConfigBytes = 4u << 20;

std::vector<std::string> string_list(JsonValue::Reader value, const std::string& field) {
  if (value.isNull()) return {};
  if (!value.isArray()) throw Error("config.json: " + field + ": expected an array of strings");
  std::vector<std::string> out;
  for (auto item : value.getArray()) {
    if (!item.isString()) throw Error("config.json: " + field + ": expected an array of strings");
    out.emplace_back(item.getString().cStr());
  }
  return out;
}

// A terminal dimension: a whole number of characters that fits a UInt16.
uint16_t console_dimension(JsonValue::Reader size, const char* name) {
  std::string field = std::string("process.consoleSize.") + name;
  KJ_IF_MAYBE (v, json_member(size, name)) {
    if (!v->isNumber()) throw Error("config.json: " + field + ": expected a number");
    double n = v->getNumber();
    if (!(n >= 0 && n <= 65535) || n != static_cast<double>(static_cast<uint32_t>(n))) {
      throw Error("config.json: " + field + ": expected a whole number from 0 to 65535");
    }
    return static_cast<uint16_t>(n);
  }
  return 0;
}

}  // namespace

JsonValue::Reader decode_config_json(const std::string& config_json,
                                     capnp::MallocMessageBuilder& message) {
  if (config_json.size() > kMaxConfigBytes) {
    throw Error("config.json: " + std::to_string(config_json.size()) +
                " bytes, over the limit of " + std::to_string(kMaxConfigBytes));
  }
  auto root = message.initRoot<JsonValue>();
  capnp::JsonCodec codec;
  codec.setMaxNestingDepth(32);
  std::string text = unescape_json_unicode(config_json, "config.json");
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&] { codec.decodeRaw(kj::arrayPtr(text.data(), text.size()), root); })) {
    throw Error(std::string("config.json: not valid JSON: ") + e->getDescription().cStr());
  }
  return root.asReader();
}

kj::Maybe<JsonValue::Reader> json_member(JsonValue::Reader object, kj::StringPtr name) {
  if (!object.isObject()) return nullptr;
  for (auto field : object.getObject()) {
    if (field.getName() == name) return field.getValue();
  }
  return nullptr;
}

OciProcess parse_oci_process(const std::string& config_json) {
  capnp::MallocMessageBuilder message;
  JsonValue::Reader spec = decode_config_json(config_json, message);
  if (!spec.isObject()) throw Error("config.json: expected a JSON object");

  OciProcess out;
  JsonValue::Reader process;
  KJ_IF_MAYBE (p, json_member(spec, "process")) {
    process = *p;
  } else {
    throw Error("config.json: process: missing (the container needs a process to run)");
  }
  if (!process.isObject()) throw Error("config.json: process: expected an object");
  KJ_IF_MAYBE (args, json_member(process, "args")) {
    out.args = string_list(*args, "process.args");
  }
  if (out.args.empty()) throw Error("config.json: process.args: empty (nothing to run)");
  KJ_IF_MAYBE (env, json_member(process, "env")) {
    out.env = string_list(*env, "process.env");
  }
  KJ_IF_MAYBE (cwd, json_member(process, "cwd")) {
    if (!cwd->isString()) throw Error("config.json: process.cwd: expected a string");
    out.cwd = cwd->getString().cStr();
  }
  KJ_IF_MAYBE (size, json_member(process, "consoleSize")) {
    if (!size->isNull()) {
      if (!size->isObject()) throw Error("config.json: process.consoleSize: expected an object");
      out.console_width = console_dimension(*size, "width");
      out.console_height = console_dimension(*size, "height");
    }
  }
  KJ_IF_MAYBE (annotations, json_member(spec, "annotations")) {
    if (!annotations->isObject()) throw Error("config.json: annotations: expected an object");
    KJ_IF_MAYBE (t, json_member(*annotations, kTemplateAnnotation)) {
      if (!t->isString()) {
        throw Error(std::string("config.json: annotations.") + kTemplateAnnotation +
                    ": expected a string");
      }
      out.template_name = t->getString().cStr();
    }
    KJ_IF_MAYBE (c, json_member(*annotations, kCheckpointAnnotation)) {
      if (!c->isString()) {
        throw Error(std::string("config.json: annotations.") + kCheckpointAnnotation +
                    ": expected a string");
      }
      out.checkpoint_template = c->getString().cStr();
      try {
        check_checkpoint_template_name(out.checkpoint_template);
      } catch (const Error& e) {
        throw Error(std::string("config.json: annotations.") + kCheckpointAnnotation + ": " +
                    e.what());
      }
    }
  }
  return out;
}

OciProcess read_oci_process(const std::string& bundle) {
  std::string path = bundle + "/config.json";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_errno(path);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
    throw Error(path + ": not a regular file of at most " + std::to_string(kMaxConfigBytes) +
                " bytes");
  }
  return parse_oci_process(read_file(path));
}

}  // namespace wisp::shim
