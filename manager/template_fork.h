// Forking a running VM into a new template (Sandbox.snapshot): one warmed sandbox made into a
// template that clones many. The new template's snapshot is a DIFF over the snapshot the VM was
// restored from (its parent template's), holding only the pages written since; the parent's
// snapshot layers are hard-linked into the new generation, beside the diff, where the parent
// rule of snapshot/snapshot_trust.h accepts them:
//
//   .NAME.gen-X/snapshot/          the diff; its state names its parent "parent-ID"
//   .NAME.gen-X/parent-ID/         hard links of the parent template's snapshot (id ID)
//   .NAME.gen-X/parent-ID2/ ...    and of each layer below it when the parent is a fork itself,
//                                  under the names its diffs record
//   .NAME.gen-X/template.info      the parent's handler, machine and drives; "parent PARENT"
//
// The links make the fork independent of its parent template: removing or rebuilding the
// parent removes its names for the files, not the files, so a fork never breaks and removal
// of a parent is not refused.
#pragma once

#include <string>

#include "manager/template_store.h"

namespace wisp::manager {

// The snapshot layer directory name a fork gives its parent layer of snapshot id `id`. Throws
// Error unless `id` is 1..64 letters and digits (it becomes a file name).
std::string fork_parent_dir_name(const std::string& id);

// Makes template `name` from the VM restored from `parent` (held open by the caller, so its
// files stay) whose VMM listens on `control_socket`. The VM is paused for the snapshot and
// runs on after it. The chain is verified before the template is published, whole or not at
// all. Throws VmFailed (agent_vm.h) when the VMM fails the snapshot, Error otherwise (a bad or
// taken name: check_template_name, TemplateStaging; a damaged parent).
TemplateInfo fork_template(const OpenTemplate& parent, const std::string& control_socket,
                           const std::string& name);

}  // namespace wisp::manager
