#include "manager/snapshot_ops.h"

#include "api/vmm_client.h"
#include "base/error.h"
#include "base/file_io.h"
#include "manager/criu_drive.h"
#include "manager/criu_image_store.h"
#include "snapshot/machine_snapshot.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/snapshot_trust.h"

namespace wisp::manager {

control::SnapshotReport create_snapshot(const std::string& control_socket, const std::string& dir,
                                        bool diff, const std::string& parent_name) {
  return create_snapshot(*client::VmmClient::connect(control_socket), dir, diff, parent_name);
}

control::SnapshotReport create_snapshot(client::VmmClient& vmm, const std::string& dir, bool diff,
                                        const std::string& parent_name) {
  const std::string target = absolute_path(dir);
  snapshot::NewSnapshotDir out(target);
  snapshot::SnapshotFiles files = out.files();
  control::SnapshotReport report = vmm.snapshot({target, diff, files.state_fd, files.memory_fd});
  snapshot::seal_drive_identities(files.state_fd, out.temp_dir() + "/" + snapshot::kStateFileName,
                                  target, parent_name);
  out.commit();
  return report;
}

void verify_snapshot_chain(const std::string& dir,
                           const std::function<void(const SnapshotLayer&)>& on_layer) {
  std::string current = dir, expected_id, child;
  for (uint32_t depth = 0;; ++depth) {
    if (depth > snapshot::kMaxDiffDepth) throw Error(dir + ": too many diff layers");
    snapshot::SnapshotReport report = snapshot::verify_snapshot(current);
    if (!child.empty() && report.id != expected_id)
      throw Error(child + "/" + snapshot::kStateFileName + ": its parent " + current +
                  " is another snapshot (id " + report.id + ", expected " + expected_id + ")");
    std::string description = report.to_string();
    // A template's CRIU image of its worker lies in its (top) snapshot directory.
    if (depth == 0 && has_criu_image(current)) {
      StoredCriuImage image = verify_criu_image(current);
      description += "criu image: " + std::to_string(image.bytes) + " bytes, " +
                     std::to_string(image.files) + " files, checksum ok\n";
      // Its drive, when it has one (a missing one is made again by the fallback).
      if (has_criu_drive(current)) {
        CriuDriveRecord drive = verify_criu_drive(current);
        description += "criu image drive: " + std::to_string(drive.identity.size_bytes) +
                       " bytes, checksum ok\n";
      }
    }
    on_layer({current, description, report.parent_dir, report.id});
    if (report.parent_id.empty()) return;
    expected_id = report.parent_id;
    std::string parent = snapshot::parent_snapshot_dir(current, report.parent_dir,
                                                       current + "/" + snapshot::kStateFileName);
    child = current;
    current = parent;
  }
}

uint64_t snapshot_memory_digest(const std::string& dir) { return snapshot::memory_digest(dir); }

}  // namespace wisp::manager
