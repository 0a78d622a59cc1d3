// Fuzzes the shim's readers of a container's bundle beyond process.args (untrusted: a bundle is
// built from an image's config): config.json's user, cwd, rlimits and linux.resources
// (shim/oci_sandbox.h), the rootfs mounts of a Create (shim/rootfs_mounts.h), given as
// lines "type\tsource\toption,option,...", and the wisp record of a checkpoint image
// (shim/checkpoint_record.h). Either parses or throws wisp::Error; nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/split.h"
#include "shim/checkpoint_record.h"
#include "shim/oci_sandbox.h"
#include "shim/rootfs_mounts.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 3 == 2) {
      wisp::shim::CheckpointRecord r = wisp::shim::parse_checkpoint_record(text);
      // What parses formats back to the same text's fields (serve's name rule held).
      if (wisp::shim::parse_checkpoint_record(wisp::shim::format_checkpoint_record(r))
              .template_name != r.template_name)
        abort();
    } else if (data[0] % 3 == 1) {
      wisp::shim::parse_oci_sandbox(text);
    } else {
      std::vector<wisp::shim::RootfsMount> mounts;
      for (const std::string& line : wisp::split(text, '\n')) {
        if (line.empty()) continue;
        std::vector<std::string> f = wisp::split(line, '\t');
        f.resize(3);
        mounts.push_back({f[0], f[1], "", wisp::split(f[2], ',')});
      }
      wisp::shim::RootfsSource s = wisp::shim::parse_rootfs_mounts(mounts);
      // What parses is what the shim then uses: absolute paths only.
      if (s.kind == wisp::shim::RootfsSource::Kind::kDirectory && s.directory[0] != '/') abort();
      for (const std::string& l : s.lowerdirs)
        if (l.empty() || l[0] != '/') abort();
    }
  } catch (const wisp::Error&) {
  }
  return 0;
}
