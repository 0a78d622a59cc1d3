// Forking a running VM into a template (what `wisp serve`'s Sandbox.snapshot does): a diff
// snapshot of a clone of template PARENT, written after it was warmed further, published as a
// new template whose invocations restore that state. One warmed sandbox, many clones.
//
// The new generation holds its diff in "snapshot/" and its parent's full snapshot in "parent/"
// (hard links to the parent generation's files: the same store, so no copy), so the diff's
// parent lies next to it as snapshot/snapshot_trust.h requires, and removing or rebuilding
// PARENT later never breaks the fork: its files live as long as either template has them.
#pragma once

#include <string>

#include "api/vmm_control.h"
#include "manager/template_store.h"

namespace wisp::client {
class VmmClient;
}  // namespace wisp::client

namespace wisp::manager {

struct ForkedTemplate {
  TemplateInfo info;
  control::SnapshotReport report;
};

// Snapshots the VM behind `vmm` (restored from `parent`'s snapshot, still running afterwards)
// as template `name`. Throws Error: a bad or taken name, a parent that is itself a fork (its
// snapshot is a diff: fork the sandbox of its parent instead), a VM not restored from
// `parent`, a failed write (nothing is published then).
ForkedTemplate fork_template(client::VmmClient& vmm, const OpenTemplate& parent,
                             const std::string& name);

}  // namespace wisp::manager
