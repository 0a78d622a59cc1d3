// The runtime v2 shim's command line, as containerd runs it (runtime/v2/shim/util.go,
// binary.go):
//   containerd-shim-wisp-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
//   containerd-shim-wisp-v2 -namespace NS -address ADDR -publish-binary BIN -id ID -bundle DIR
//   delete
// and, with no action, the serving mode that `start` leaves running. The syntax is Go's flag
// package's (containerd's own shims parse it so): "-name value", "-name=value", "--name" alike,
// boolean flags without a value, flags before the action.
#pragma once

#include <string>

#include "base/options.h"

namespace wisp::shim {

struct ShimOptions {
  std::string ns;                             // -namespace
  std::string address;                        // -address: containerd's gRPC socket
  std::string publish_binary = "containerd";  // -publish-binary: for publishing events
  std::string id;                             // -id: the task (container) id
  std::string bundle;                         // -bundle: else the working directory
  std::string socket;                         // -socket: accepted as containerd's shims do
  bool debug = false;                         // -debug
  bool version = false;                       // -v
  std::string action;                         // "start", "delete" or "" (serve)
};

// Throws UsageError naming the flag and what is wrong.
ShimOptions parse_shim_options(int argc, const char* const* argv);

}  // namespace wisp::shim
