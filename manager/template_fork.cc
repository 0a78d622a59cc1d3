#include "manager/template_fork.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <vector>

#include "base/error.h"
#include "base/file_io.h"
#include "manager/agent_vm.h"
#include "manager/snapshot_ops.h"

namespace wisp::manager {
namespace {

constexpr const char* kLayerFiles[] = {"state", "memory"};

std::string base_name(const std::string& dir) { return dir.substr(dir.find_last_of('/') + 1); }

// Hard-links the files of snapshot layer `from` into the new directory `to`: the fork's own
// names for the parent's files, which outlive the parent template.
void link_layer(const std::string& from, const std::string& to) {
  if (::mkdir(to.c_str(), 0700) != 0) throw_errno("create " + to);
  for (const char* f : kLayerFiles) {
    std::string src = from + "/" + f, dst = to + "/" + f;
    if (::link(src.c_str(), dst.c_str()) != 0) throw_errno("hard-link " + src + " to " + dst);
  }
  fsync_dir(to);
}

}  // namespace

std::string fork_parent_dir_name(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 64;
  for (char c : id) ok = ok && std::isalnum(static_cast<unsigned char>(c));
  if (!ok)
    throw Error("snapshot id \"" + id.substr(0, 80) + "\" is not 1 to 64 letters and digits");
  return "parent-" + id;
}

TemplateInfo fork_template(const OpenTemplate& parent, const std::string& control_socket,
                           const std::string& name) {
  check_template_name(name);
  TemplateStaging staging(name);
  // The parent's layers, top first, verified as a restore would find them.
  std::vector<SnapshotLayer> layers;
  verify_snapshot_chain(parent.snapshot_dir,
                        [&](const SnapshotLayer& layer) { layers.push_back(layer); });
  const std::string parent_name = fork_parent_dir_name(layers.front().id);
  for (size_t i = 0; i < layers.size(); ++i) {
    // Below the top, a layer's name is the one its child's state records (a sibling's name).
    std::string to = staging.dir() + "/" + (i == 0 ? parent_name : base_name(layers[i].dir));
    link_layer(layers[i].dir, to);
  }
  control::SnapshotReport snap;
  try {
    snap = create_snapshot(control_socket, staging.snapshot_dir(), /*diff=*/true, parent_name);
  } catch (const Error& e) {
    throw VmFailed(std::string("the VM's diff snapshot failed: ") + e.what());
  }
  // The new chain is checked whole (each parent the one its diff was made on) before anyone
  // can clone it.
  size_t depth = 0;
  verify_snapshot_chain(staging.snapshot_dir(), [&](const SnapshotLayer&) { ++depth; });
  if (depth != layers.size() + 1)
    throw Error("template " + name + ": the diff is over " + std::to_string(depth - 1) +
                " layer(s), the parent template has " + std::to_string(layers.size()));
  TemplateInfo info = parent.info;
  info.name = name;
  info.parent = parent.info.name;
  info.created_unix = static_cast<int64_t>(::time(nullptr));
  info.snapshot_ms = snap.total_ms;
  info.memory_file_bytes = snap.memory_file_bytes;
  info.memory_disk_bytes = snap.memory_disk_bytes;
  staging.commit(info);
  return info;
}

}  // namespace wisp::manager
