#include "manager/service/clone_start.h"

#include <kj/async-unix.h>

#include "base/log.h"
#include "manager/agent_vm.h"
#include "manager/vmm_priority.h"

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

// A standby answers on its order socket (a datagram each): watch it, then ask poll_ready.
kj::Promise<std::string> standby_ready(kj::Own<kj::UnixEventPort::FdObserver> watch,
                                       manager::StandbyVmm& standby) {
  auto& w = *watch;
  return w.whenBecomesReadable().then(
      [watch = kj::mv(watch), &standby]() mutable -> kj::Promise<std::string> {
        try {
          if (auto line = standby.poll_ready()) {
            if (!line->empty() && line->back() == '\n') line->pop_back();
            return *line;
          }
        } catch (const Error& e) {
          fail(e.what());
        }
        return standby_ready(kj::mv(watch), standby);
      });
}

}  // namespace

CloneProcess::CloneProcess(const std::string& snapshot_dir, const std::vector<std::string>& drives,
                           const manager::VmNet& net, const JailFlags& jail, UniqueFd memory)
    : dir_(std::make_unique<manager::RuntimeDir>("wisp-serve")) {
  vmm_ = std::make_unique<manager::VmmChild>(
      manager::vmm_restore_args(snapshot_dir, drives, net, dir_->file("vsock.sock"),
                                dir_->file("control.sock"), jail, dir_->path()),
      dir_->file("vmm.log"), /*ready_pipe=*/true, /*order_fd=*/-1,
      manager::make_vm_network(manager::clone_network(net)), memory.get());
}

CloneProcess::CloneProcess(std::unique_ptr<manager::StandbyVmm> standby,
                           const std::string& snapshot_dir, const std::vector<std::string>& drives,
                           manager::HugePageLayer* layer)
    : standby_(std::move(standby)) {
  standby_->order_restore(snapshot_dir, drives, layer);
}

CloneProcess::~CloneProcess() {
  vmm_.reset();  // the VMM dies before its directory goes
  dir_.reset();
}

std::string CloneProcess::vsock_path() const {
  return standby_ ? standby_->vsock_uds() : dir_->file("vsock.sock");
}

std::string CloneProcess::control_path() const {
  return standby_ ? standby_->control_socket() : dir_->file("control.sock");
}

manager::VmmChild& CloneProcess::vmm() { return standby_ ? standby_->vmm() : *vmm_; }

kj::Promise<std::string> wait_ready(kj::AsyncIoContext& io, CloneProcess& process) {
  if (manager::StandbyVmm* standby = process.standby()) {
    auto watch = kj::heap<kj::UnixEventPort::FdObserver>(
        io.unixEventPort, standby->ready_fd(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
    return standby_ready(kj::mv(watch), *standby);
  }
  auto r = kj::heap<ReadyReader>();
  // Not owned: the VmmChild keeps the pipe; the stream only watches it.
  r->in = io.lowLevelProvider->wrapInputFd(process.vmm().ready_fd());
  return read_line(kj::mv(r), process.vmm());
}

CloneStarter::CloneStarter(const JailFlags& jail, uint32_t pool_target, uint64_t huge_layer_mib)
    : jail_(jail) {
  if (huge_layer_mib > 0) {
    std::string why;
    layer_ = manager::HugePageLayer::create(huge_layer_mib, &why);
    if (!layer_)
      LOG_WARN("no huge-page layer (%s): restores map the store's memory files 4 KiB at a time",
               why.c_str());
  }
  if (pool_target > 0)
    pool_ = std::make_unique<manager::VmmPool>(pool_target, jail, manager::StandbyClass{},
                                               /*control=*/true);
}

std::unique_ptr<CloneProcess> CloneStarter::start(const manager::OpenTemplate& tpl,
                                                  bool background) {
  if (background) {
    auto process = std::make_unique<CloneProcess>(tpl.snapshot_dir, tpl.info.drives, tpl.info.net,
                                                  jail_, layer_copy(tpl));
    // Before the jail forks its child: that child and every thread inherit it.
    manager::set_vmm_background(process->vmm().pid(), true);
    return process;
  }
  const manager::StandbyClass& size = pool_ ? pool_->size_class() : manager::StandbyClass{};
  // A standby restores no machine above its class, and no NIC: its jail's network namespace
  // holds no TAP, which a spawned `wisp-vmm restore` opens before entering its own.
  bool fits = pool_ && (tpl.info.mem_mib << 20) <= size.mem_bytes && tpl.info.vcpus <= size.vcpus &&
              tpl.info.net.empty();
  if (fits) {
    if (std::unique_ptr<manager::StandbyVmm> standby = pool_->take()) {
      try {
        return std::make_unique<CloneProcess>(std::move(standby), tpl.snapshot_dir, tpl.info.drives,
                                              layer_.get());
      } catch (const Error& e) {
        // The standby is dropped (killed); a spawned restore says the same or succeeds.
        LOG_WARN("pool: a standby VMM did not take %s: %s", tpl.snapshot_dir.c_str(), e.what());
      }
    }
  }
  return std::make_unique<CloneProcess>(tpl.snapshot_dir, tpl.info.drives, tpl.info.net, jail_,
                                        layer_copy(tpl));
}

UniqueFd CloneStarter::layer_copy(const manager::OpenTemplate& tpl) {
  if (!layer_) return {};
  auto it = base_memory_.find(tpl.snapshot_dir);
  if (it == base_memory_.end()) {
    if (base_memory_.size() >= 1024) base_memory_.clear();  // templates come and go
    try {
      it = base_memory_
               .emplace(tpl.snapshot_dir,
                        manager::base_memory_file(tpl.snapshot_dir, tpl.info.drives))
               .first;
    } catch (const Error&) {
      return {};  // the restore itself says what is wrong with the snapshot
    }
  }
  return layer_->copy_of(it->second);
}

void CloneStarter::refill() {
  if (!pool_) return;
  pool_->refill();
  if (pool_->last_error() != logged_error_) {  // once each, not at every refill
    logged_error_ = pool_->last_error();
    LOG_WARN("pool: %s", logged_error_.c_str());
  }
}

std::unique_ptr<manager::StandbyVmm> CloneStarter::take_for_boot(const manager::VmSpec& vm) {
  if (!pool_) return nullptr;
  std::string why = manager::StandbyVmm::why_not_boot(vm, pool_->size_class(), jail_);
  if (!why.empty()) {
    LOG_INFO("pool: a template build spawns its VMM: %s", why.c_str());
    return nullptr;
  }
  std::unique_ptr<manager::StandbyVmm> standby = pool_->take();
  if (!standby) LOG_INFO("pool: no standby VMM for a template build: it spawns its VMM");
  return standby;
}

uint32_t CloneStarter::idle() { return pool_ ? static_cast<uint32_t>(pool_->idle()) : 0; }

}  // namespace wisp::service
