#include "shim/shim_options.h"

#include <functional>
#include <map>

namespace wisp::shim {

namespace {

bool parse_bool(const std::string& flag, const std::string& text) {
  // strconv.ParseBool's spellings.
  if (text == "1" || text == "t" || text == "T" || text == "true" || text == "TRUE" ||
      text == "True") {
    return true;
  }
  if (text == "0" || text == "f" || text == "F" || text == "false" || text == "FALSE" ||
      text == "False") {
    return false;
  }
  throw UsageError("invalid boolean value \"" + text + "\" for -" + flag);
}

}  // namespace

ShimOptions parse_shim_options(int argc, const char* const* argv) {
  ShimOptions o;
  std::map<std::string, std::string*> text_flags = {
      {"namespace", &o.ns}, {"address", &o.address}, {"publish-binary", &o.publish_binary},
      {"id", &o.id},        {"bundle", &o.bundle},   {"socket", &o.socket},
  };
  std::map<std::string, bool*> bool_flags = {{"debug", &o.debug}, {"v", &o.version}};

  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') break;  // the first operand: the action
    if (arg == "--") {
      ++i;
      break;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    if (name.empty() || name[0] == '-' || name[0] == '=')
      throw UsageError("bad flag syntax: " + arg);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (auto b = bool_flags.find(name); b != bool_flags.end()) {
      *b->second = has_value ? parse_bool(name, value) : true;
      continue;
    }
    auto t = text_flags.find(name);
    if (t == text_flags.end()) throw UsageError("flag provided but not defined: -" + name);
    if (!has_value) {
      if (i + 1 >= argc) throw UsageError("flag needs an argument: -" + name);
      value = argv[++i];
    }
    *t->second = value;
  }
  if (i < argc) o.action = argv[i++];
  if (i < argc) throw UsageError(std::string("unexpected argument after the action: ") + argv[i]);
  if (!o.action.empty() && o.action != "start" && o.action != "delete") {
    throw UsageError("unknown action \"" + o.action + "\": expected start or delete");
  }
  return o;
}

}  // namespace wisp::shim
