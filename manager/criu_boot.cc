#include "manager/criu_boot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <span>

#include "base/clock.h"
#include "base/error.h"
#include "base/unique_fd.h"
#include "manager/criu_drive.h"
#include "manager/criu_image_store.h"
#include "snapshot/crc64.h"

namespace wisp::manager {
namespace {

constexpr size_t kChunkBytes = 1 << 20;  // the agent's own chunk size (api/agent.capnp)

// The image file, read in chunks for restoreWorker, its size and CRC-64 checked against its
// .sum as it goes: the last read throws instead of ending the stream if they differ, so the
// agent is never told to restore a damaged image.
class ImageReader {
 public:
  explicit ImageReader(const std::string& dir)
      : path_(dir + "/" + kCriuImageFile), want_(read_criu_image_sum(dir)) {
    fd_ = UniqueFd(open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd_) throw_errno("open " + path_);
    struct stat st;
    if (fstat(fd_.get(), &st) != 0) throw_errno("stat " + path_);
    if (!S_ISREG(st.st_mode)) throw Error(path_ + ": not a regular file");
    if (static_cast<uint64_t>(st.st_size) != want_.bytes)
      throw Error(path_ + ": " + std::to_string(st.st_size) + " bytes, its .sum says " +
                  std::to_string(want_.bytes) + " (damaged or truncated)");
  }

  std::string next() {
    std::string chunk(kChunkBytes, '\0');
    ssize_t n;
    do {
      n = read(fd_.get(), chunk.data(), chunk.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("read " + path_);
    chunk.resize(static_cast<size_t>(n));
    if (n == 0) {
      if (sent_ != want_.bytes || crc_ != want_.crc64)
        throw Error(path_ + ": changed or damaged while it was sent (size or CRC-64 differs " +
                    "from its .sum)");
      return chunk;
    }
    sent_ += chunk.size();
    if (sent_ > want_.bytes) throw Error(path_ + ": grew while it was sent");
    crc_ = snapshot::crc64(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()),
        crc_);
    return chunk;
  }

  uint64_t bytes() const { return want_.bytes; }

 private:
  std::string path_;
  StoredCriuImage want_;
  UniqueFd fd_;
  uint64_t sent_ = 0, crc_ = 0;
};

}  // namespace

VmSpec template_boot_spec(const TemplateInfo& t) {
  if (t.mode != "worker")
    throw Error("template " + t.name + ": not a worker template (only a worker has a CRIU image)");
  if (!t.boot_recorded)
    throw Error("template " + t.name +
                ": its template.info records no boot (made by an older wisp): re-create it "
                "with wisp template create --rebuild");
  VmSpec vm;
  vm.kernel = t.boot_kernel;
  vm.initrd = t.boot_initrd;
  vm.rootfs = t.boot_rootfs;
  vm.cmdline = t.boot_cmdline;
  vm.mem_bytes = t.mem_mib << 20;
  vm.vcpus = t.vcpus;
  vm.portable = t.portable;
  // drives[0] is the rootfs (template_create's template_drives), the rest in slot order.
  size_t first = t.boot_rootfs.empty() ? 0 : 1;
  if (first > t.drives.size())
    throw Error("template " + t.name + ": boot_rootfs recorded but no drive lines");
  vm.drives.assign(t.drives.begin() + static_cast<std::ptrdiff_t>(first), t.drives.end());
  vm.nets = t.net.nets;
  vm.network = clone_network(t.net);
  check_guest_files(vm);
  return vm;
}

const char* criu_source_name(CriuSource source) {
  return source == CriuSource::kDrive ? "drive" : "upload";
}

namespace {

// The guest's name of the drive attached after `vm`'s others: the rootfs is /dev/vda, then
// the drives in order. "" when there is no letter left.
std::string next_drive_device(const VmSpec& vm) {
  size_t slot = (vm.rootfs.empty() ? 0 : 1) + vm.drives.size();
  if (slot == 0 || slot > 25) return "";
  return std::string("/dev/vd") + static_cast<char>('a' + slot);
}

// Restores through the upload (restoreWorker), the archive checked as it is sent.
void restore_by_upload(CriuStart& out, const client::Handler& h, ImageReader& image) {
  client::AgentClient::CriuRestore r = out.agent->restore_worker(h, [&] { return image.next(); });
  out.source = CriuSource::kUpload;
  out.criu_guest_ms = static_cast<double>(r.restore_ns) / 1e6;
  out.unpack_ms = static_cast<double>(r.unpack_ns) / 1e6;
  out.upload_ms = static_cast<double>(r.upload_ns) / 1e6;
}

}  // namespace

CriuStart start_from_criu_image(const TemplateInfo& t, const std::string& snapshot_dir,
                                const JailFlags& jail, bool control, Cancellation* cancellation,
                                std::chrono::milliseconds boot_timeout,
                                const std::function<void(const std::string&)>& log,
                                bool use_drive) {
  uint64_t t0 = now_ns();
  VmSpec vm = template_boot_spec(t);
  vm.jail = jail;
  if (!has_criu_image(snapshot_dir))
    throw Error("template " + t.name + ": no CRIU image in " + snapshot_dir);
  ImageReader image(snapshot_dir);  // its .sum read and size checked before anything boots
  CriuStart out;
  out.image_bytes = image.bytes();
  std::string device = use_drive ? next_drive_device(vm) : "";
  // WISP_CRIU_NO_DRIVE=1: the image is sent even when the drive could be used (the benchmark's
  // and the tests' way to time and keep checking the path an older template's agent takes).
  const char* no_drive = getenv("WISP_CRIU_NO_DRIVE");
  if (no_drive && std::string(no_drive) == "1") device.clear();
  if (!device.empty()) {
    try {
      uint64_t d0 = now_ns();
      std::string drive = ensure_criu_drive(snapshot_dir, log, &out.drive_remade);
      if (out.drive_remade) out.drive_ms = ms_since(d0);
      vm.drives.push_back(drive + ",ro");
    } catch (const Error& e) {
      if (log)
        log(std::string("CRIU image drive: cannot be made (") + e.what() +
            "); sending the image to the agent instead");
      device.clear();
    }
  }
  if (cancellation && cancellation->cancelled()) throw Error("interrupted");
  out.vm = AgentVm::boot(vm, control, "wisp-criu");
  Cancellation::Watch watch(cancellation, out.vm->vmm());
  try {
    out.agent = out.vm->connect_agent(boot_timeout, /*confirm=*/false);
    out.agent->ping();
  } catch (const Error& e) {
    throw out.vm->failure(e.what());
  }
  out.boot_ms = ms_since(t0);
  client::Handler h;  // as template_create's warm-up started it
  h.name = t.name;
  h.argv = t.argv;
  h.env = t.env;
  h.network = t.network;
  try {
    bool uploaded = device.empty();
    if (!uploaded) {
      try {
        client::AgentClient::CriuDriveRestore r = out.agent->restore_worker_from_drive(h, device);
        out.source = CriuSource::kDrive;
        out.criu_guest_ms = static_cast<double>(r.restore_ns) / 1e6;
        out.mount_ms = static_cast<double>(r.mount_ns) / 1e6;
      } catch (const client::AgentError& e) {
        if (!e.unimplemented()) throw;
        if (log)
          log("the template's agent cannot restore from a drive (an older agent); sending the "
              "image to it instead");
        uploaded = true;
      }
    }
    if (uploaded) restore_by_upload(out, h, image);
  } catch (const client::AgentError& e) {
    if (!out.vm->vmm().alive() || e.kind() == client::AgentError::Kind::kDisconnected)
      throw out.vm->failure(std::string("CRIU restore: ") + e.what());
    // The guest is up but its agent could not restore the worker: the call's VM did not come
    // up warm, as a refused snapshot restore (exit 126), not a bad input.
    throw VmFailed(std::string("CRIU restore: ") + e.what());
  }
  out.criu_ms = ms_since(t0) - out.boot_ms;
  return out;
}

}  // namespace wisp::manager
