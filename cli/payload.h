// The one payload rule of `wisp exec` and `wisp invoke`:
//   --payload FILE   the file's contents; --payload - reads stdin to its end (even a terminal);
//   otherwise        stdin when it is not a terminal (a pipe, a file, /dev/null), to its end;
//                    a terminal gives an empty payload, without waiting for end-of-file;
//   -n, --no-stdin   an empty payload, stdin not read (as `ssh -n`, for scripts that leave a
//                    pipe open).
#pragma once

#include <string>

#include "base/options.h"

namespace wisp::cli {

struct PayloadSource {
  std::string file;  // --payload: a path or "-"; "" when not given
  bool no_stdin = false;
};

// Declares --payload FILE|- and -n/--no-stdin.
void add_payload_options(OptionParser& parser, PayloadSource* source);
// Throws UsageError when the options contradict each other (-n with --payload -).
void check_payload_options(const PayloadSource& source);

// Reads the payload by the rule, from `stdin_fd` where the rule says stdin. While it waits on
// stdin, a readable `cancel_fd` (-1: none) stops it with Error("interrupted"). Throws Error
// naming a file that cannot be read.
std::string read_payload(const PayloadSource& source, int stdin_fd = 0, int cancel_fd = -1);

}  // namespace wisp::cli
