#include "manager/service/clone_start.h"

#include "manager/agent_vm.h"

namespace wisp::service {
namespace {

[[noreturn]] void fail(const std::string& message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

struct ReadyReader {
  kj::Own<kj::AsyncInputStream> in;
  std::string line;
  kj::byte buf[128];
};

kj::Promise<std::string> read_line(kj::Own<ReadyReader> r, manager::VmmChild& vmm) {
  auto& ref = *r;
  return ref.in->tryRead(ref.buf, 1, sizeof(ref.buf))
      .then([r = kj::mv(r), &vmm](size_t n) mutable -> kj::Promise<std::string> {
        if (n == 0) fail("the VMM failed before it was ready:\n" + vmm.log_tail());
        r->line.append(reinterpret_cast<const char*>(r->buf), n);
        size_t nl = r->line.find('\n');
        if (nl != std::string::npos) return r->line.substr(0, nl);
        if (r->line.size() > 4096) fail("the VMM's ready line is too long");
        return read_line(kj::mv(r), vmm);
      });
}

}  // namespace

CloneProcess::CloneProcess(const std::string& snapshot_dir, const std::vector<std::string>& drives,
                           const JailFlags& jail)
    : dir_("wisp-serve"),
      vmm_(manager::vmm_restore_args(snapshot_dir, drives, dir_.file("vsock.sock"),
                                     dir_.file("control.sock"), jail, dir_.path()),
           dir_.file("vmm.log"), /*ready_pipe=*/true) {}

kj::Promise<std::string> wait_ready(kj::AsyncIoContext& io, CloneProcess& process) {
  auto r = kj::heap<ReadyReader>();
  // Not owned: the VmmChild keeps the pipe; the stream only watches it.
  r->in = io.lowLevelProvider->wrapInputFd(process.vmm().ready_fd());
  return read_line(kj::mv(r), process.vmm());
}

}  // namespace wisp::service
