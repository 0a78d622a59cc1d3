#include "manager/template_rebuild.h"

#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "base/clock.h"
#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "manager/criu_boot.h"
#include "manager/criu_drive.h"
#include "manager/criu_image_store.h"
#include "manager/snapshot_ops.h"
#include "manager/working_set_probe.h"

namespace wisp::manager {
namespace {

// As template_create: the guest idles between the last RPC and the pause, so clones do not
// redo what it was in the middle of.
constexpr std::chrono::milliseconds kSettle{500};

// The rebuild lock of template `name`, held; an empty fd when another process holds it.
UniqueFd lock_rebuild(const std::string& name) {
  std::string path = open_store(/*create=*/false) + "/." + name + kRebuildLockSuffix;
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw_errno("template " + name + ": open " + path);
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return UniqueFd();
    throw_errno("template " + name + ": lock " + path);
  }
  return fd;
}

// The CRIU image beside the new snapshot (it does not change): hard links (same store, same
// filesystem), else a copy written atomically. Its drive and record are linked too when they
// fit (a copy would have another modification time, so none is made: the next fallback makes
// the drive again from the archive).
void keep_criu_image(const std::string& from_dir, const std::string& to_dir,
                     const Progress& progress) {
  for (const char* f : {kCriuImageFile, kCriuImageSumFile}) {
    std::string from = from_dir + "/" + f, to = to_dir + "/" + f;
    if (link(from.c_str(), to.c_str()) == 0) continue;
    if (errno != EXDEV && errno != EPERM && errno != EMLINK)
      throw_errno("link " + from + " to " + to);
    write_file_atomic(to, read_file(from), 0600);
  }
  std::string unfit = criu_drive_unfit_reason(from_dir);
  bool linked = unfit.empty();
  for (const char* f : {kCriuDriveFile, kCriuDriveRecordFile}) {
    std::string from = from_dir + "/" + f, to = to_dir + "/" + f;
    if (linked && link(from.c_str(), to.c_str()) != 0) {
      unfit = "cannot be linked (" + std::string(strerror(errno)) + ")";
      linked = false;
    }
  }
  if (!linked) {
    unlink((to_dir + "/" + kCriuDriveFile).c_str());
    unlink((to_dir + "/" + kCriuDriveRecordFile).c_str());
    progress("CRIU image drive not kept (" + unfit + "): the next fallback makes it again");
  }
  fsync_dir(to_dir);
}

// The new snapshot's working set (manager/working_set_probe.h), as template_create records
// it: a probe clone's first call. The payload is an empty one (template.info keeps no warm-up
// payload); a probe that fails leaves the template without a working set, with a warning,
// rather than failing a rebuild whose snapshot is good: clones then load each page on first
// touch, as before.
void record_new_working_set(const TemplateInfo& t, const std::string& dir, const JailFlags& jail,
                            const Progress& progress, Cancellation* cancellation,
                            TemplateRebuilt* out) {
  progress("recording the working set: a probe clone's first call...");
  try {
    WorkingSetProbe probe = record_working_set(dir, t, "", jail, cancellation);
    out->working_set_pages = probe.pages;
    progress("working set: " + std::to_string(probe.pages) + " pages in " +
             std::to_string(probe.ranges.size()) + " ranges, " +
             std::to_string(probe.written_pages) + " of them written");
  } catch (const Error& e) {
    if (cancellation && cancellation->cancelled()) throw;
    progress(std::string("warning: no working set recorded (") + e.what() +
             "); clones load each page on first touch");
  }
}

}  // namespace

std::string rebuild_log_path(const std::string& name) {
  check_template_name(name);
  return templates_dir() + "/." + name + kRebuildLogSuffix;
}

TemplateRebuilt rebuild_template(const std::string& name, const RebuildOptions& options,
                                 const Progress& progress, Cancellation* cancellation) {
  uint64_t t0 = options.start_ns ? options.start_ns : now_ns();
  check_template_name(name);
  TemplateRebuilt out;
  read_template(name);  // "template NAME: not found" before any lock file is made
  UniqueFd lock = lock_rebuild(name);
  if (!lock) {
    if (options.skip_if_busy) {
      out.skipped = "another rebuild of " + name + " is running";
      return out;
    }
    throw Error("template " + name + ": another rebuild of it is running");
  }
  // Held to the end: the image is read from this generation while the new one is made.
  OpenTemplate tpl = open_template(name);
  if (!options.only_generation.empty() && tpl.dir != options.only_generation) {
    out.skipped = "template " + name + " was replaced meanwhile (now " + tpl.dir + ")";
    return out;
  }
  const TemplateInfo& t = tpl.info;
  if (t.mode != "worker")
    throw Error("template " + name + ": not a worker template: only a worker's CRIU image " +
                "can rebuild it (re-create it with wisp template create --rebuild)");
  if (!has_criu_image(tpl.snapshot_dir))
    throw Error("template " + name + ": no CRIU image (" + tpl.snapshot_dir + "/" + kCriuImageFile +
                "): re-create it with wisp template create --rebuild");
  template_boot_spec(t);  // no boot record: refused before anything is staged or booted
  TemplateStaging staging(name, /*rebuild=*/true);
  progress("booting " + name + " cold (" + std::to_string(t.mem_mib) + " MiB, " +
           std::to_string(t.vcpus) + " vCPU" + (t.portable ? ", portable CPU" : "") +
           ") and restoring its worker from the CRIU image...");
  // The image is sent, not attached as a drive: the snapshot of this VM must have the
  // template's own devices only (a drive in it would be one more for every clone to be given).
  CriuStart start =
      start_from_criu_image(t, tpl.snapshot_dir, options.jail, /*control=*/true, cancellation,
                            options.boot_timeout, progress, /*use_drive=*/false);
  out.criu_image_bytes = start.image_bytes;
  out.boot_ms = start.boot_ms;
  out.criu_ms = start.criu_ms;
  out.criu_guest_ms = start.criu_guest_ms;
  char line[200];
  snprintf(line, sizeof(line),
           "worker restored: boot %.0f ms, CRIU restore %.0f ms (criu in the guest %.0f ms, "
           "%.1f MiB image, from the %s)",
           out.boot_ms, out.criu_ms, out.criu_guest_ms,
           static_cast<double>(start.image_bytes) / (1 << 20),
           start.source == CriuSource::kDrive ? "drive" : "upload");
  progress(line);
  std::optional<Cancellation::Watch> watch(std::in_place, cancellation, start.vm->vmm());
  control::SnapshotReport snap;
  try {
    // Reseeded now as a clone would be; each clone of the new snapshot is reseeded again.
    send_fresh_entropy(*start.agent, 64);
    start.agent->prepare_snapshot();
    start.agent.reset();
    std::this_thread::sleep_for(kSettle);
    progress("snapshotting...");
    uint64_t s0 = now_ns();
    snap = create_snapshot(*start.vm->control(), staging.snapshot_dir(), /*diff=*/false);
    out.snapshot_ms = ms_since(s0);
  } catch (const Error& e) {
    std::string what = std::string("snapshot failed: ") + e.what();
    if (!start.vm->vmm().alive()) throw start.vm->failure(what);
    throw Error(what);
  }
  watch.reset();
  start.vm.reset();
  keep_criu_image(tpl.snapshot_dir, staging.snapshot_dir(), progress);
  // The old working set describes the old snapshot's pages: the new one records its own.
  if (t.warmup > 0)
    record_new_working_set(t, staging.snapshot_dir(), options.jail, progress, cancellation, &out);
  out.info = t;
  out.info.snapshot_ms = snap.total_ms;
  out.info.memory_file_bytes = snap.memory_file_bytes;
  out.info.memory_disk_bytes = snap.memory_disk_bytes;
  out.info.created_unix = static_cast<int64_t>(::time(nullptr));
  staging.commit(out.info);
  out.total_ms = ms_since(t0);
  return out;
}

}  // namespace wisp::manager
