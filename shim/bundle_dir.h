// The bundle directory a shim command works on: -bundle when given, else the working directory
// (containerd runs start and the serving mode inside the bundle).
#pragma once

#include <string>

#include "shim/shim_options.h"

namespace wisp::shim {

// An absolute path. Throws wisp::Error when the working directory cannot be read.
std::string bundle_dir(const ShimOptions& options);

}  // namespace wisp::shim
