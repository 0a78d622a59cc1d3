#include "base/options.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "base/exit_codes.h"

namespace wisp {
namespace {

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// Parses a whole decimal number with nothing around it; false on anything else or overflow.
bool decimal(const std::string& s, uint64_t* out) {
  if (!all_digits(s)) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "MiB" for 1 << 20: what a plain number counts in.
std::string unit_name(uint64_t unit) {
  switch (unit) {
    case 1:
      return "bytes";
    case 1ull << 10:
      return "KiB";
    case 1ull << 20:
      return "MiB";
    case 1ull << 30:
      return "GiB";
    default:
      return "units of " + std::to_string(unit) + " bytes";
  }
}

// The multiplier of a size suffix ("", "K", "Mi", "GiB", "tb"...), or 0 if it is not one.
uint64_t size_suffix(const std::string& suffix, uint64_t unit) {
  if (suffix.empty()) return unit;
  std::string s = lower(suffix);
  const std::string letters = "kmgt";
  size_t power = letters.find(s[0]);
  if (power == std::string::npos) return 0;
  std::string tail = s.substr(1);
  if (!tail.empty() && tail != "b" && tail != "i" && tail != "ib") return 0;
  return 1ull << (10 * (power + 1));
}

std::string option_value(const std::string& option, const std::string& text) {
  return text.empty() ? option + " ''" : option + " " + text;
}

}  // namespace

int usage_error(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "%s: %s\nTry '%s --help'.\n", command.c_str(), message.c_str(),
               command.c_str());
  return kExitUsage;
}

int run_subcommand(const std::string& program, const std::string& usage, int argc, char** argv,
                   const std::vector<Subcommand>& subcommands, const char* version) {
  std::string name = argc < 2 ? "" : argv[1];
  if (name.empty() || name == "-h" || name == "--help" || name == "help") {
    std::fputs(usage.c_str(), name.empty() ? stderr : stdout);
    return name.empty() ? kExitUsage : kExitOk;
  }
  if (version && (name == "version" || name == "--version")) {
    std::printf("%s %s\n", program.c_str(), version);
    return kExitOk;
  }
  std::string known;
  for (const Subcommand& s : subcommands) {
    if (s.name == name) return s.run(argc - 1, argv + 1);
    known += (known.empty() ? "" : ", ") + s.name;
  }
  return usage_error(program, "unknown command '" + name + "' (" + known + ")");
}

uint64_t parse_count(const std::string& option, const std::string& text, uint64_t min,
                     uint64_t max) {
  uint64_t n = 0;
  if (!decimal(text, &n) || n < min || n > max) {
    // A bound of 2^32 - 1 or more is the type's, not a limit anyone chose: leave it unsaid.
    std::string range = max >= std::numeric_limits<uint32_t>::max()
                            ? "of at least " + std::to_string(min)
                            : "from " + std::to_string(min) + " to " + std::to_string(max);
    throw UsageError(option_value(option, text) + ": expected a count " + range);
  }
  return n;
}

uint64_t parse_size(const std::string& option, const std::string& text, uint64_t unit, uint64_t min,
                    uint64_t max) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t n = 0;
  uint64_t multiplier = size_suffix(text.substr(digits), unit);
  bool ok = decimal(text.substr(0, digits), &n) && multiplier != 0 &&
            n <= std::numeric_limits<uint64_t>::max() / multiplier;
  uint64_t bytes = ok ? n * multiplier : 0;
  if (ok && bytes % unit != 0)
    throw UsageError(option_value(option, text) + ": expected a whole number of " +
                     unit_name(unit));
  if (!ok || bytes < min || bytes > max)
    throw UsageError(option_value(option, text) + ": expected a size from " + format_size(min) +
                     " to " + format_size(max) + " (a number of " + unit_name(unit) +
                     ", or with a suffix K, M, G or T)");
  return bytes;
}

std::chrono::milliseconds parse_duration(const std::string& option, const std::string& text,
                                         std::chrono::milliseconds min,
                                         std::chrono::milliseconds max) {
  size_t end = 0;
  while (end < text.size() && ((text[end] >= '0' && text[end] <= '9') || text[end] == '.')) ++end;
  std::string number = text.substr(0, end), suffix = lower(text.substr(end));
  double factor = suffix == "ms"                     ? 1
                  : suffix.empty() || suffix == "s"  ? 1e3
                  : suffix == "m" || suffix == "min" ? 60e3
                  : suffix == "h"                    ? 3600e3
                                                     : 0;
  bool ok = factor > 0 && !number.empty() && number != "." && number.find('.') == number.rfind('.');
  double ms = ok ? std::strtod(number.c_str(), nullptr) * factor : 0;
  ok = ok && std::isfinite(ms) && ms < 1e18;
  auto rounded = std::chrono::milliseconds(ok ? std::llround(ms) : 0);
  if (!ok || rounded < min || rounded > max)
    throw UsageError(option_value(option, text) + ": expected a duration from " +
                     format_duration(min) + " to " + format_duration(max) +
                     " (seconds, or with a suffix ms, s, m or h)");
  return rounded;
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4; ++i) {
    uint64_t unit = 1ull << (10 * (4 - i));
    if (bytes >= unit && bytes % unit == 0) return std::to_string(bytes / unit) + " " + kUnits[i];
  }
  return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
}

std::string format_duration(std::chrono::milliseconds duration) {
  int64_t ms = duration.count();
  if (ms >= 86400000 && ms % 86400000 == 0)
    return std::to_string(ms / 86400000) + (ms == 86400000 ? " day" : " days");
  if (ms >= 3600000 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + " h";
  if (ms >= 60000 && ms % 60000 == 0) return std::to_string(ms / 60000) + " min";
  if (ms >= 1000 && ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

OptionParser::OptionParser(std::string command) : command_(std::move(command)) {}

OptionParser& OptionParser::add(Spec spec) {
  specs_.push_back(std::move(spec));
  return *this;
}

OptionParser& OptionParser::flag(const std::string& name, std::function<void()> on_set,
                                 char short_name) {
  return add({name, short_name, false, false, "", std::move(on_set), nullptr});
}

OptionParser& OptionParser::flag(const std::string& name, bool* out, char short_name) {
  return flag(
      name, [out] { *out = true; }, short_name);
}

OptionParser& OptionParser::value(const std::string& name,
                                  std::function<void(const std::string&)> on_value) {
  return add({name, 0, true, false, "", nullptr, std::move(on_value)});
}

OptionParser& OptionParser::optional_value(const std::string& name, const std::string& value_prefix,
                                           std::function<void()> on_set,
                                           std::function<void(const std::string&)> on_value) {
  return add({name, 0, true, true, value_prefix, std::move(on_set), std::move(on_value)});
}

OptionParser& OptionParser::text(const std::string& name, std::string* out, bool allow_empty) {
  return value(name, [name, out, allow_empty](const std::string& v) {
    if (v.empty() && !allow_empty) throw UsageError("--" + name + ": expected a value, not ''");
    *out = v;
  });
}

OptionParser& OptionParser::count(const std::string& name, uint64_t* out, uint64_t min,
                                  uint64_t max) {
  return value(name, [name, out, min, max](const std::string& v) {
    *out = parse_count("--" + name, v, min, max);
  });
}

OptionParser& OptionParser::count(const std::string& name, uint32_t* out, uint32_t min,
                                  uint32_t max) {
  return value(name, [name, out, min, max](const std::string& v) {
    *out = static_cast<uint32_t>(parse_count("--" + name, v, min, max));
  });
}

OptionParser& OptionParser::size(const std::string& name, uint64_t* out, uint64_t unit,
                                 uint64_t min, uint64_t max) {
  return value(name, [name, out, unit, min, max](const std::string& v) {
    *out = parse_size("--" + name, v, unit, min, max);
  });
}

OptionParser& OptionParser::duration(const std::string& name, std::chrono::milliseconds* out,
                                     std::chrono::milliseconds min, std::chrono::milliseconds max) {
  return value(name, [name, out, min, max](const std::string& v) {
    *out = parse_duration("--" + name, v, min, max);
  });
}

const OptionParser::Spec* OptionParser::find_long(const std::string& name) const {
  for (const Spec& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

const OptionParser::Spec* OptionParser::find_short(char c) const {
  for (const Spec& s : specs_)
    if (s.short_name == c && c != 0) return &s;
  return nullptr;
}

void OptionParser::apply_value(const Spec& spec, const std::string& value) const {
  try {
    spec.on_value(value);
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    // A message that already names the option only needs the value in front.
    std::string what = e.what(), name = "--" + spec.name;
    if (what.starts_with(name + ": ")) what.erase(0, name.size() + 2);
    throw UsageError(option_value(name, value) + ": " + what);
  }
}

OptionParser::Result OptionParser::parse(int argc, const char* const* argv, int first) const {
  std::vector<std::string> args;
  for (int i = first; i < argc; ++i) args.emplace_back(argv[i]);
  return parse(args);
}

OptionParser::Result OptionParser::parse(const std::vector<std::string>& args) const {
  Result r;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      r.dashdash = true;
      r.rest.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    if (a == "--help") {
      r.help = true;
      return r;
    }
    if (a.starts_with("--")) {
      size_t eq = a.find('=');
      std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      const Spec* spec = find_long(name);
      if (!spec) throw UsageError("unknown option '--" + name + "'");
      if (spec->value_optional && eq == std::string::npos) {
        if (i + 1 < args.size() && args[i + 1].starts_with(spec->value_prefix))
          apply_value(*spec, args[++i]);
        else
          spec->on_set();
      } else if (!spec->takes_value) {
        if (eq != std::string::npos) throw UsageError("--" + name + " takes no value");
        spec->on_set();
      } else if (eq != std::string::npos) {
        apply_value(*spec, a.substr(eq + 1));
      } else if (i + 1 < args.size()) {
        apply_value(*spec, args[++i]);
      } else {
        throw UsageError("--" + name + ": missing its value");
      }
    } else if (a.size() > 1 && a[0] == '-') {
      // One-letter flags, alone or bundled ("-v", "-vv").
      for (size_t k = 1; k < a.size(); ++k) {
        if (a[k] == 'h') {
          r.help = true;
          return r;
        }
        const Spec* spec = find_short(a[k]);
        if (!spec) throw UsageError("unknown option '-" + std::string(1, a[k]) + "'");
        spec->on_set();
      }
    } else {
      r.operands.push_back(a);
    }
  }
  return r;
}

}  // namespace wisp
