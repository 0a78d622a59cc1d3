#include "api/vmm_client.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/thread_io.h"
#include "api/vmm.capnp.h"
#include "api/vmm_page_ranges.h"
#include "base/error.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace wisp::client {
namespace {

UniqueFd connect_unix(const std::string& path) {
  sockaddr_un addr;
  if (path.empty() || !unix_address(path, &addr))
    throw Error("control socket '" + path + "': path empty or too long for a Unix socket");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw_errno("control socket " + path + " (is the VM running with --control-socket?)");
  return fd;
}

// A file handed to the VMM: the capability carries a copy of the caller's descriptor, owned
// here because the RPC system may keep the capability a little after the call returns.
class FileHandleImpl final : public api::FileHandle::Server {
 public:
  explicit FileHandleImpl(UniqueFd fd) : fd_(std::move(fd)) {}
  kj::Maybe<int> getFd() override {
    if (!fd_) return nullptr;
    return fd_.get();
  }

 private:
  UniqueFd fd_;
};

// A handle carrying a copy of `fd`, or none when fd < 0 (which the VMM refuses).
api::FileHandle::Client file_handle(int fd, const char* what) {
  UniqueFd copy;
  if (fd >= 0) {
    copy.reset(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy) throw_errno(std::string("snapshot: duplicate the ") + what + " descriptor");
  }
  return kj::heap<FileHandleImpl>(std::move(copy));
}

control::SnapshotReport report_of(api::SnapshotReport::Reader r) {
  control::SnapshotReport o;
  o.id = r.getId().cStr();
  o.diff = r.getDiff();
  o.pause_ms = r.getPauseMs();
  o.state_ms = r.getStateMs();
  o.memory_ms = r.getMemoryMs();
  o.total_ms = r.getTotalMs();
  o.memory_file_bytes = r.getMemoryFileBytes();
  o.memory_disk_bytes = r.getMemoryDiskBytes();
  o.pages_written = r.getPagesWritten();
  o.pages_in_layer = r.getPagesInLayer();
  return o;
}

}  // namespace

struct VmmClient::Impl {
  // Declaration order is teardown order reversed: the capability and RPC system go before the
  // stream they write to, and the event loop goes last.
  std::shared_ptr<ThreadIo> thread = thread_io();
  kj::AsyncIoContext& io = thread->io;
  std::string path;
  std::chrono::milliseconds timeout{0};
  kj::Own<kj::AsyncCapabilityStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  api::Vmm::Client vmm = nullptr;

  // Runs the loop until `p` resolves, at most `timeout`; KJ failures become wisp::Error.
  template <typename T>
  T wait(kj::Promise<T>&& p, const char* what) {
    auto timed = io.provider->getTimer().timeoutAfter(
        static_cast<int64_t>(timeout.count()) * kj::MILLISECONDS, kj::mv(p));
    try {
      return timed.wait(io.waitScope);
    } catch (const kj::Exception& e) {
      std::string desc(e.getDescription().cStr());
      if (e.getType() == kj::Exception::Type::DISCONNECTED)
        throw Error("control socket " + path + ": " + what + ": the VMM closed the connection (" +
                    desc + ")");
      // A VMM's own refusal arrives as "remote exception: <its message>".
      const std::string prefix = "remote exception: ";
      if (desc.rfind(prefix, 0) == 0) desc.erase(0, prefix.size());
      throw Error(std::string(what) + ": " + desc);
    }
  }
};

VmmClient::VmmClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VmmClient::~VmmClient() = default;

std::unique_ptr<VmmClient> VmmClient::connect(const std::string& socket_path,
                                              std::chrono::milliseconds call_timeout) {
  auto impl = std::make_unique<Impl>();
  impl->path = socket_path;
  impl->timeout = call_timeout;
  UniqueFd fd = connect_unix(socket_path);
  // A stream that can pass descriptors (SCM_RIGHTS): the snapshot's files go to the VMM that
  // way. Cap'n Proto 0.9 sends descriptors only on a network that also accepts some
  // (maxFdsPerMessage > 0), so the bound is the VMM's; any the VMM sends back are closed with
  // their message, as this side keeps no capability from it.
  impl->stream = impl->io.lowLevelProvider->wrapUnixSocketFd(
      fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  impl->rpc = kj::heap<capnp::TwoPartyClient>(*impl->stream, api::Vmm::MAX_FDS_PER_MESSAGE);
  impl->vmm = impl->rpc->bootstrap().castAs<api::Vmm>();
  return std::unique_ptr<VmmClient>(new VmmClient(std::move(impl)));
}

void VmmClient::ping() { impl_->wait(impl_->vmm.pingRequest().send().ignoreResult(), "ping"); }

void VmmClient::pause() { impl_->wait(impl_->vmm.pauseRequest().send().ignoreResult(), "pause"); }

void VmmClient::pause_lasting() {
  auto req = impl_->vmm.pauseRequest();
  req.setLasting(true);
  impl_->wait(req.send().ignoreResult(), "pause");
}

void VmmClient::pause_holding_clock() {
  auto req = impl_->vmm.pauseRequest();
  req.setLasting(true);
  req.setHoldClock(true);
  impl_->wait(req.send().ignoreResult(), "pause");
}

void VmmClient::resume() {
  impl_->wait(impl_->vmm.resumeRequest().send().ignoreResult(), "resume");
}

control::SnapshotReport VmmClient::snapshot(const control::SnapshotRequest& request) {
  auto req = impl_->vmm.snapshotRequest();
  req.setDir(request.dir);
  req.setDiff(request.diff);
  req.setStateFile(file_handle(request.state_fd, "state file"));
  req.setMemoryFile(file_handle(request.memory_fd, "memory file"));
  auto response = impl_->wait(req.send(), "snapshot");
  return report_of(response.getReport());
}

control::MemoryStats VmmClient::stats() {
  auto response = impl_->wait(impl_->vmm.statsRequest().send(), "stats");
  auto s = response.getStats();
  control::MemoryStats out{s.getResidentPages(), s.getWrittenPages(), s.getPages(), {}};
  if (response.hasVcpu()) {
    auto v = response.getVcpu();
    out.vcpu = {v.getAvailable(), v.getExits(),     v.getNestedPageFaults(), v.getPagesMapped(),
                v.getHaltExits(), v.getMmioExits(), v.getIoExits()};
  }
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> VmmClient::resident_ranges() {
  auto response = impl_->wait(impl_->vmm.residentRangesRequest().send(), "residentRanges");
  return api::page_runs_of(response.getRanges());
}

std::vector<std::pair<uint64_t, uint64_t>> VmmClient::written_ranges() {
  auto response = impl_->wait(impl_->vmm.writtenRangesRequest().send(), "writtenRanges");
  return api::page_runs_of(response.getRanges());
}

uint64_t VmmClient::populate_writable(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  auto req = impl_->vmm.populateWritableRequest();
  api::put_page_ranges(req, ranges);
  return impl_->wait(req.send(), "populateWritable").getPages();
}

}  // namespace wisp::client
