// One command-line parser for every wisp and wisp-vmm command: long options with a value
// ("--mem 256" or "--mem=256"), flags, one-letter aliases (-v, -h; bundled as -vv), operands
// anywhere among the options, and "--" ending the options. Values are checked by one parser
// per kind (counts, sizes, durations), each with its limits and a message naming the option.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"

namespace wisp {

// A mistake on the command line. The message names the option and what is wrong with it;
// the command reports it with usage_error() and exits with kExitUsage.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Prints "COMMAND: MESSAGE" and "Try 'COMMAND --help'." on stderr. Returns kExitUsage.
int usage_error(const std::string& command, const std::string& message);

// One subcommand of a command that has several ("wisp template create"): its name and what
// runs it, with argv[0] being that name.
struct Subcommand {
  std::string name;
  std::function<int(int argc, char** argv)> run;
};

// Runs the subcommand argv[1] names. No argument prints `usage` on stderr (kExitUsage);
// -h, --help or help print it on stdout; with `version` given, "version" and "--version" print
// "PROGRAM VERSION". An unknown name is a usage error listing the known ones.
int run_subcommand(const std::string& program, const std::string& usage, int argc, char** argv,
                   const std::vector<Subcommand>& subcommands, const char* version = nullptr);

// A whole decimal number in [min, max]. Throws UsageError naming `option`, e.g.
// "--vcpus 0: expected a count from 1 to 254".
uint64_t parse_count(const std::string& option, const std::string& text, uint64_t min,
                     uint64_t max);

// A size in bytes, a whole multiple of `unit` in [min, max]. A plain number counts in `unit`
// (1 << 20: "--mem 256" is 256 MiB); a suffix K, M, G or T (powers of 1024, optionally
// followed by "iB" or "B") gives its own unit: "--mem 2G". Throws UsageError naming `option`.
uint64_t parse_size(const std::string& option, const std::string& text, uint64_t unit, uint64_t min,
                    uint64_t max);

// A duration in [min, max]: a plain number is seconds (fractions allowed: "1.5"), or a number
// with a suffix ms, s, m or h ("500ms", "2m"). Rounded to milliseconds. Throws UsageError.
std::chrono::milliseconds parse_duration(const std::string& option, const std::string& text,
                                         std::chrono::milliseconds min,
                                         std::chrono::milliseconds max);

// "16 MiB", "64 GiB", "4096 bytes": a size for messages and help text.
std::string format_size(uint64_t bytes);
// "500 ms", "30 s", "2 min", "7 days": a duration for messages and help text.
std::string format_duration(std::chrono::milliseconds duration);

// The options one command accepts, declared once; parse() walks the arguments in order and
// stores each value as it meets it (so "--help" after a bad option reports the bad option).
// Not thread-safe; build one per parse.
class OptionParser {
 public:
  // `command` names the command in messages: "wisp run", "wisp template create".
  explicit OptionParser(std::string command);

  // --NAME (and -SHORT when given) without a value; `on_set` runs each time it appears.
  OptionParser& flag(const std::string& name, std::function<void()> on_set, char short_name = 0);
  OptionParser& flag(const std::string& name, bool* out, char short_name = 0);
  // --NAME VALUE. `on_value` may throw Error (reported as "--NAME VALUE: message") or
  // UsageError (reported as it is).
  OptionParser& value(const std::string& name, std::function<void(const std::string&)> on_value);
  // --NAME alone (`on_set`), or --NAME VALUE (`on_value`) when the next argument starts with
  // `value_prefix` (or --NAME=VALUE): an option whose value is recognisable by its start, such as
  // `--net` and `--net tap=NAME`, so a bare one never swallows the operand after it.
  OptionParser& optional_value(const std::string& name, const std::string& value_prefix,
                               std::function<void()> on_set,
                               std::function<void(const std::string&)> on_value);
  // --NAME TEXT stored in `out`; an empty TEXT is refused unless `allow_empty`.
  OptionParser& text(const std::string& name, std::string* out, bool allow_empty = false);
  // --NAME N with parse_count's rule.
  OptionParser& count(const std::string& name, uint64_t* out, uint64_t min, uint64_t max);
  OptionParser& count(const std::string& name, uint32_t* out, uint32_t min, uint32_t max);
  // --NAME SIZE with parse_size's rule; `out` is in bytes.
  OptionParser& size(const std::string& name, uint64_t* out, uint64_t unit, uint64_t min,
                     uint64_t max);
  // --NAME DURATION with parse_duration's rule.
  OptionParser& duration(const std::string& name, std::chrono::milliseconds* out,
                         std::chrono::milliseconds min, std::chrono::milliseconds max);

  struct Result {
    bool help = false;                  // -h or --help: print the help; parsing stopped there
    std::vector<std::string> operands;  // arguments that are not options, before "--"
    std::vector<std::string> rest;      // every argument after "--", untouched
    bool dashdash = false;              // "--" was given
  };
  // Parses argv[first] to argv[argc - 1]. Throws UsageError for an unknown option, a missing
  // value, a value given to a flag, or a value its parser refuses.
  Result parse(int argc, const char* const* argv, int first = 1) const;
  Result parse(const std::vector<std::string>& args) const;

  const std::string& command() const { return command_; }

 private:
  struct Spec {
    std::string name;  // without the leading "--"
    char short_name = 0;
    bool takes_value = false;
    bool value_optional = false;  // optional_value(): a value only when it starts with...
    std::string value_prefix;     // ...this
    std::function<void()> on_set;
    std::function<void(const std::string&)> on_value;
  };
  OptionParser& add(Spec spec);
  const Spec* find_long(const std::string& name) const;
  const Spec* find_short(char c) const;
  void apply_value(const Spec& spec, const std::string& value) const;

  std::string command_;
  std::vector<Spec> specs_;
};

}  // namespace wisp
