// What the shim puts in containerd's checkpoint (Task.Checkpoint, issue 16 item 3), and reads
// back when a task is created from one (CreateTaskRequest.checkpoint).
//
// containerd's checkpoint is a directory the runtime fills; containerd tars it into its content
// store (media type application/vnd.containerd.container.criu.checkpoint.criu.tar, whatever the
// runtime), and for a restore unpacks it into a fresh directory whose path the runtime gets at
// Create. It never looks inside. A wisp checkpoint is a wisp snapshot of the running sandbox
// (Sandbox.snapshot: a template in serve's store, a diff over the container's template), so
// the directory holds one small file naming that template: the snapshot itself stays in the
// store, which a cluster shares between nodes as it shares every template. A checkpoint image
// is therefore only restorable where that store is reachable.
//
// The file is untrusted on the way back (an image can be imported from anywhere): size-capped,
// its version and every field checked, the template name by serve's own rule.
#pragma once

#include <string>

namespace wisp::shim {

// The file's name inside the checkpoint directory.
constexpr const char* kCheckpointFile = "wisp-checkpoint";

struct CheckpointRecord {
  std::string template_name;  // the snapshot of the sandbox, a template of serve's store
  std::string task_id;        // the task it was taken from (informational)
};

// "wisp-checkpoint 1\ntemplate NAME\ntask ID\n". Throws wisp::Error for a field that cannot be
// written (a newline in it).
std::string format_checkpoint_record(const CheckpointRecord& record);

// The inverse. Throws wisp::Error naming the line or field that is wrong.
CheckpointRecord parse_checkpoint_record(const std::string& text);

// Writes <dir>/wisp-checkpoint; reads it back. Throw wisp::Error naming the path.
void write_checkpoint_record(const std::string& dir, const CheckpointRecord& record);
CheckpointRecord read_checkpoint_record(const std::string& dir);

// Throws wisp::Error unless `name` is a template name serve takes (1 to 64 letters, digits,
// '.', '_' or '-', not starting with '.').
void check_checkpoint_template_name(const std::string& name);

// A template name for a new checkpoint of task `task_id`: "ckpt-" and 32 hex digits of sha256
// over the task id, the time and the shim's pid (unique, and a valid template name whatever
// the id holds).
std::string checkpoint_template_name(const std::string& task_id);

}  // namespace wisp::shim
