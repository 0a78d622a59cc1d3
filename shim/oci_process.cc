#include "shim/oci_process.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file_io.h"

namespace wisp::shim {

namespace {

using capnp::JsonValue;

constexpr size_t kMaxConfigBytes = 4u << 20;

// The member `name` of a JSON object, or a null reader's absence.
kj::Maybe<JsonValue::Reader> member(JsonValue::Reader object, kj::StringPtr name) {
  for (auto field : object.getObject()) {
    if (field.getName() == name) return field.getValue();
  }
  return nullptr;
}

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

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The 4 hex digits at text[at..at+4) as a number, or -1.
long hex4(const std::string& text, size_t at) {
  if (at + 4 > text.size()) return -1;
  long v = 0;
  for (size_t i = at; i < at + 4; ++i) {
    int d = hex_digit(text[i]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

void append_utf8(std::string* out, unsigned long cp) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xc0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xe0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    *out += static_cast<char>(0xf0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

}  // namespace

// capnp 0.9's JSON decoder (Debian 12's) turns "\u003e" into "4" instead of ">"; containerd
// writes config.json with Go's encoding/json, which escapes <, > and & that way, so a command
// like `sh -c 'echo x >&2'` would arrive changed. The escapes are rewritten here as the UTF-8
// they stand for (valid JSON), except the ones JSON requires escaped, which get their short
// forms; a control character with no short form is refused.
std::string unescape_json_unicode(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    char c = json[i];
    if (!in_string) {
      if (c == '"') in_string = true;
      out += c;
      continue;
    }
    if (c == '"') {
      in_string = false;
      out += c;
      continue;
    }
    if (c != '\\' || i + 1 >= json.size()) {
      out += c;
      continue;
    }
    if (json[i + 1] != 'u') {
      out += c;
      out += json[++i];
      continue;
    }
    long cp = hex4(json, i + 2);
    if (cp < 0) throw Error("config.json: a \\u escape without 4 hex digits");
    size_t used = 6;
    if (cp >= 0xd800 && cp <= 0xdbff) {
      long low =
          i + 8 <= json.size() && json.compare(i + 6, 2, "\\u") == 0 ? hex4(json, i + 8) : -1;
      if (low < 0xdc00 || low > 0xdfff) throw Error("config.json: a lone UTF-16 surrogate");
      cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
      used = 12;
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
      throw Error("config.json: a lone UTF-16 surrogate");
    }
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (cp < 0x20) {
          throw Error("config.json: control character \\u" + json.substr(i + 2, 4) +
                      " in a string is not supported");
        }
        append_utf8(&out, static_cast<unsigned long>(cp));
    }
    i += used - 1;
  }
  return out;
}

OciProcess parse_oci_process(const std::string& config_json) {
  if (config_json.size() > kMaxConfigBytes) {
    throw Error("config.json: " + std::to_string(config_json.size()) +
                " bytes, over the limit of " + std::to_string(kMaxConfigBytes));
  }
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<JsonValue>();
  capnp::JsonCodec codec;
  codec.setMaxNestingDepth(32);
  std::string text = unescape_json_unicode(config_json);
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&] { codec.decodeRaw(kj::arrayPtr(text.data(), text.size()), root); })) {
    throw Error(std::string("config.json: not valid JSON: ") + e->getDescription().cStr());
  }
  JsonValue::Reader spec = root.asReader();
  if (!spec.isObject()) throw Error("config.json: expected a JSON object");

  OciProcess out;
  JsonValue::Reader process;
  KJ_IF_MAYBE (p, member(spec, "process")) {
    process = *p;
  } else {
    throw Error("config.json: process: missing (the container needs a process to run)");
  }
  if (!process.isObject()) throw Error("config.json: process: expected an object");
  KJ_IF_MAYBE (args, member(process, "args")) {
    out.args = string_list(*args, "process.args");
  }
  if (out.args.empty()) throw Error("config.json: process.args: empty (nothing to run)");
  KJ_IF_MAYBE (env, member(process, "env")) {
    out.env = string_list(*env, "process.env");
  }
  KJ_IF_MAYBE (cwd, member(process, "cwd")) {
    if (!cwd->isString()) throw Error("config.json: process.cwd: expected a string");
    out.cwd = cwd->getString().cStr();
  }
  KJ_IF_MAYBE (annotations, member(spec, "annotations")) {
    if (!annotations->isObject()) throw Error("config.json: annotations: expected an object");
    KJ_IF_MAYBE (t, member(*annotations, kTemplateAnnotation)) {
      if (!t->isString()) {
        throw Error(std::string("config.json: annotations.") + kTemplateAnnotation +
                    ": expected a string");
      }
      out.template_name = t->getString().cStr();
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
