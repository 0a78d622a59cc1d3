#include "manager/template_fork.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <memory>

#include "api/vmm_client.h"
#include "base/error.h"
#include "manager/snapshot_ops.h"

namespace wisp::manager {
namespace {

constexpr const char* kParentName = "parent";

// Hard-links every regular file of the snapshot directory `from` into the new directory `to`:
// the fork's copy of its parent's snapshot, sharing its blocks. Anything else there (nothing
// the store writes) is refused rather than skipped: the copy must restore like the original.
void link_snapshot_files(const std::string& from, const std::string& to) {
  if (::mkdir(to.c_str(), 0700) != 0) throw_errno("mkdir " + to);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(from.c_str()), ::closedir);
  if (!dir) throw_errno("open " + from);
  while (dirent* e = ::readdir(dir.get())) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string src = from + "/" + name;
    struct stat st;
    if (::lstat(src.c_str(), &st) != 0) throw_errno("stat " + src);
    if (!S_ISREG(st.st_mode)) throw Error(src + ": not a regular file; cannot fork its template");
    std::string dst = to + "/" + name;
    if (::link(src.c_str(), dst.c_str()) != 0) throw_errno("link " + src + " to " + dst);
  }
}

}  // namespace

ForkedTemplate fork_template(client::VmmClient& vmm, const OpenTemplate& parent,
                             const std::string& name) {
  check_template_name(name);
  if (!parent.info.parent.empty())
    throw Error("template " + parent.info.name + " is itself a fork of " + parent.info.parent +
                ": fork a sandbox of " + parent.info.parent + " instead");
  TemplateStaging staging(name);
  link_snapshot_files(parent.snapshot_dir, staging.dir() + "/" + kParentName);
  ForkedTemplate out;
  out.report = create_snapshot(vmm, staging.snapshot_dir(), /*diff=*/true, kParentName);
  // Restore checks the same before it runs a clone; checked here, a VM restored from another
  // template (its diff's parent id is not this parent's) is refused before anything is
  // published.
  verify_snapshot_chain(staging.snapshot_dir(), [](const SnapshotLayer&) {});
  out.info = parent.info;
  out.info.name = name;
  out.info.parent = parent.info.name;
  out.info.created_unix = static_cast<int64_t>(::time(nullptr));
  out.info.snapshot_ms = out.report.total_ms;
  out.info.memory_file_bytes = out.report.memory_file_bytes;
  out.info.memory_disk_bytes = out.report.memory_disk_bytes;
  staging.commit(out.info);
  return out;
}

}  // namespace wisp::manager
