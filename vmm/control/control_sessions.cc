#include "vmm/control/control_sessions.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "api/vmm.capnp.h"
#include "api/vmm_page_ranges.h"
#include "base/error.h"
#include "base/log.h"
#include "base/unique_fd.h"

namespace wisp {
namespace {

[[noreturn]] void fail(const std::string& message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

// The manager's file `received` with a request (the descriptor the RPC system got with the
// capability), copied for the call once it is known to be a regular, empty file open for
// writing: a snapshot written into anything else (a directory, a read-only or append-only
// file, old data the new pages would not all overwrite) would be wrong or fail half-way.
UniqueFd take_output_file(kj::Maybe<int> received, const char* what, const std::string& dir) {
  const std::string name = dir + ": the " + what;
  int fd = -1;
  KJ_IF_MAYBE (f, received) {
    fd = *f;
  }
  if (fd < 0) fail(name + " came without a file descriptor (the manager passes the file it made)");
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) fail(errno_message(name + ": duplicate the descriptor"));
  struct stat st;
  if (::fstat(copy.get(), &st) != 0) fail(errno_message(name + ": fstat"));
  if (!S_ISREG(st.st_mode))
    fail(name + " is not a regular file" + (S_ISDIR(st.st_mode) ? " (a directory)" : ""));
  int flags = ::fcntl(copy.get(), F_GETFL);
  if (flags < 0) fail(errno_message(name + ": F_GETFL"));
  if ((flags & O_ACCMODE) != O_WRONLY && (flags & O_ACCMODE) != O_RDWR)
    fail(name + " is not open for writing");
  if (flags & O_APPEND) fail(name + " is open for appending (the VMM writes at given offsets)");
  if (st.st_size != 0)
    fail(name + " is not empty (" + std::to_string(st.st_size) + " bytes): it must be new");
  return copy;
}

void set_report(api::SnapshotReport::Builder out, const control::SnapshotReport& r) {
  out.setId(r.id);
  out.setDiff(r.diff);
  out.setPauseMs(r.pause_ms);
  out.setStateMs(r.state_ms);
  out.setMemoryMs(r.memory_ms);
  out.setTotalMs(r.total_ms);
  out.setMemoryFileBytes(r.memory_file_bytes);
  out.setMemoryDiskBytes(r.memory_disk_bytes);
  out.setPagesWritten(r.pages_written);
  out.setPagesInLayer(r.pages_in_layer);
}

}  // namespace

// One connection's Vmm capability: the calls of api/vmm.capnp, each run on the VM's loop.
class VmmConnection final : public api::Vmm::Server {
 public:
  VmmConnection(ControlSessions& sessions, PauseHolds::ConnectionId id) : s_(sessions), id_(id) {}

  kj::Promise<void> ping(PingContext) override {
    s_.run([] {});
    return kj::READY_NOW;
  }
  kj::Promise<void> pause(PauseContext context) override {
    bool lasting = context.getParams().getLasting();
    bool hold_clock = context.getParams().getHoldClock();
    s_.run([this, hold_clock] { s_.service_.pause(hold_clock); });
    s_.holds_.paused(id_, lasting);
    return kj::READY_NOW;
  }
  kj::Promise<void> resume(ResumeContext) override {
    s_.run([this] { s_.service_.resume(); });
    s_.holds_.resumed();
    return kj::READY_NOW;
  }
  kj::Promise<void> snapshot(SnapshotContext context) override {
    auto params = context.getParams();
    auto fds = kj::heapArrayBuilder<kj::Promise<kj::Maybe<int>>>(2);
    fds.add(params.getStateFile().getFd());
    fds.add(params.getMemoryFile().getFd());
    return kj::joinPromises(fds.finish())
        .then([this, context](kj::Array<kj::Maybe<int>> received) mutable {
          auto params = context.getParams();
          control::SnapshotRequest request{params.getDir().cStr(), params.getDiff()};
          UniqueFd state = take_output_file(received[0], "state file", request.dir);
          UniqueFd memory = take_output_file(received[1], "memory file", request.dir);
          request.state_fd = state.get();
          request.memory_fd = memory.get();
          control::SnapshotReport r;
          s_.run([&] { r = s_.service_.snapshot(request); });
          set_report(context.getResults().initReport(), r);
        });
  }
  kj::Promise<void> stats(StatsContext context) override {
    control::MemoryStats m;
    s_.run([&] { m = s_.service_.stats(); });
    auto out = context.getResults().initStats();
    out.setResidentPages(m.resident_pages);
    out.setWrittenPages(m.written_pages);
    out.setPages(m.pages);
    auto v = context.getResults().initVcpu();
    v.setAvailable(m.vcpu.available);
    v.setExits(m.vcpu.exits);
    v.setNestedPageFaults(m.vcpu.nested_page_faults);
    v.setPagesMapped(m.vcpu.pages_mapped);
    v.setHaltExits(m.vcpu.halt_exits);
    v.setMmioExits(m.vcpu.mmio_exits);
    v.setIoExits(m.vcpu.io_exits);
    return kj::READY_NOW;
  }
  kj::Promise<void> residentRanges(ResidentRangesContext context) override {
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    s_.run([&] { runs = s_.service_.resident_ranges(); });
    api::put_page_ranges(context.getResults(), runs);
    return kj::READY_NOW;
  }

  kj::Promise<void> writtenRanges(WrittenRangesContext context) override {
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    s_.run([&] { runs = s_.service_.written_ranges(); });
    api::put_page_ranges(context.getResults(), runs);
    return kj::READY_NOW;
  }
  kj::Promise<void> populateWritable(PopulateWritableContext context) override {
    auto in = context.getParams().getRanges();
    if (in.size() > api::Vmm::MAX_POPULATE_RANGES)
      fail("populateWritable: " + std::to_string(in.size()) + " ranges, at most " +
           std::to_string(api::Vmm::MAX_POPULATE_RANGES));
    api::PageRuns ranges = api::page_runs_of(in);
    uint64_t pages = 0;
    s_.run([&] { pages = s_.service_.populate_writable(ranges); });
    context.getResults().setPages(pages);
    return kj::READY_NOW;
  }

 private:
  ControlSessions& s_;
  PauseHolds::ConnectionId id_;
};

void ControlSessions::run(const std::function<void()>& fn) {
  bool ran;
  try {
    ran = run_on_loop_(fn);
  } catch (const Error& e) {
    fail(e.what());
  }
  if (!ran) fail("the VM is stopping");
}

capnp::Capability::Client ControlSessions::open(PauseHolds::ConnectionId* id) {
  *id = next_id_++;
  return kj::heap<VmmConnection>(*this, *id);
}

void ControlSessions::close(PauseHolds::ConnectionId id) {
  if (!holds_.closed(id)) return;
  try {
    if (run_on_loop_([this] { service_.resume(); }))
      LOG_INFO("control socket: the client holding the pause went away: VM resumed");
  } catch (const Error& e) {
    LOG_WARN("control socket: resuming after the pause's owner went away: %s", e.what());
  }
}

}  // namespace wisp
