// Checkpoint and restore of a warm worker's process tree with CRIU inside the guest (issue 17).
//
// The tree is the worker, the init of its own pid namespace (SandboxSpec::handler_is_init, so
// that nothing in it maps the agent's binary), and its children, with their pid, mount, ipc
// and uts namespaces. criu dumps it with
// --leave-running, so the worker goes on answering. The image holds the worker's memory and
// the contents of its own tmpfs mounts (/tmp, /dev); the files it maps (python3, libraries)
// are found again by path in the restoring guest's root, which must be the same root
// filesystem image (the template's). What lies outside the tree is named so a restore can put
// new things in its place:
//   - the four pipes to the agent (stdin, stdout, stderr, status), by inode: the restore
//     passes the agent's new pipes with --inherit-fd fd[N]:pipe:[INODE];
//   - the sandbox's network namespace (only a loopback): criu dumps from inside it, so the
//     image does not hold it (nor its conntrack table, which the guest kernel lacks), and
//     restores into a fresh one; no network lock (see checkpoint_worker);
//   - the agent's shared /scratch tmpfs, as the external mount "wisp-scratch": the restore
//     binds the new guest's /scratch there.
// These names go into the image as the file kWorkerInfoFile, read back (as untrusted input)
// by the restore.
//
// The image directory is sent as a CRIU image archive (api/criu_image.h).
#pragma once

#include <kj/async.h>

#include <string>
#include <vector>

#include "agent/worker.h"
#include "api/agent.capnp.h"

namespace wisp::agent {

inline constexpr char kWorkerInfoFile[] = "wisp-worker.txt";

struct CheckpointResult {
  std::string dir;  // the image directory (kCriuWorkDir/dump-N); the caller removes it
  uint64_t dump_ns = 0;
};

// Dumps `worker` between its calls (Worker::run_between_calls). Throws kj::Exception with
// criu's own words when it fails.
kj::Promise<CheckpointResult> checkpoint_worker(AgentServices& services, Worker& worker);

// Streams image directory `dir` as an archive to `sink` (chunks of at most 1 MiB); refuses
// (before sending anything) an image over `max_bytes`. Returns the archive's size and files.
struct SentImage {
  uint64_t bytes = 0;
  uint32_t files = 0;
};
kj::Promise<SentImage> send_image(const std::string& dir, api::CriuImageSink::Client sink,
                                  uint64_t max_bytes);

// The upload that restoreWorker returns: collects the archive (at most
// Agent.maxCriuImageBytes) in a file, then on done() unpacks it, restores the worker with
// criu and hands it to `adopt`.
kj::Own<api::CriuImageUpload::Server> make_restore_upload(
    AgentServices& services, HandlerConfig config, kj::Function<void(kj::Own<Worker>)> adopt);

// criu restore of the worker whose image directory is `images_dir` (its kWorkerInfoFile read
// as untrusted input; criu only reads the directory, which may be a read-only mount), with
// `work_dir` (writable, existing) for criu's pidfile and whatever else it writes and
// `work_dir`.root for the restore's root bind. Hands the restored worker to `adopt`; returns
// criu restore's run time in ns. Throws kj::Exception with criu's own words when it fails.
// Both restore paths (the upload above, a drive: criu_drive.h) go through it.
kj::Promise<uint64_t> restore_worker_from_dir(AgentServices& services, HandlerConfig config,
                                              const std::string& images_dir,
                                              const std::string& work_dir,
                                              kj::Function<void(kj::Own<Worker>)> adopt);

// `criu check` and `criu --version`.
kj::Promise<void> criu_check(AgentServices& services, api::CriuCheckResult::Builder out);

}  // namespace wisp::agent
