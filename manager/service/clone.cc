#include "manager/service/clone.h"

#include <fcntl.h>

#include "base/error.h"
#include "manager/agent_vm.h"
#include "manager/vmm_priority.h"

namespace wisp::service {
namespace {

constexpr std::chrono::milliseconds kRestoreTimeout{30000};
constexpr std::chrono::milliseconds kConnectTimeout{30000};

}  // namespace

void throw_api_error(const std::string& message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

Clone::Clone(kj::AsyncIoContext& io, Reaper& reaper, manager::OpenTemplate tpl,
             CloneStarter& starter, kj::Own<Ticket> ticket, bool background)
    : io_(io), reaper_(reaper), tpl_(std::move(tpl)), ticket_(kj::mv(ticket)) {
  try {
    process_ = starter.start(tpl_, background);
  } catch (const Error& e) {
    throw_api_error(std::string("vm-failed: starting a clone of template ") + tpl_.info.name +
                    ": " + e.what());
  }
  exit_watch_ = kj::heap<kj::UnixEventPort::FdObserver>(
      io_.unixEventPort, process_->vmm().pidfd(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  exited_ = exit_watch_->whenBecomesReadable().fork();
}

namespace {

// A clone's connections to its VMM, closed once the VMM is gone. Closed first, they had the
// VMM's control thread answer into a socket whose peer had left: KJ throws for that, and a
// VMM's first exception has libgcc sort the whole static binary's unwind table (its
// registered .eh_frame) before it can unwind: 25-40 ms of CPU per warm clone's end on the
// testbed (about 3 ms natively), taken from whatever call ran next.
struct LinksKeptOpen final : Reaper::Kept {
  kj::Own<AgentLink> agent;
  kj::Own<ControlLink> control;
};

}  // namespace

Clone::~Clone() {
  exited_ = nullptr;  // before the observer its promise waits on
  exit_watch_ = nullptr;
  // Continued first: a stopped VMM would leave the reaper's SIGTERM pending, and its jail's
  // supervisor would not remove the VM's cgroup before the SIGKILL that follows.
  if (stopped_) set_stopped(false);
  auto links = kj::heap<LinksKeptOpen>();
  links->agent = kj::mv(agent_);
  links->control = kj::mv(control_);
  reaper_.dispose(std::move(process_), kj::mv(ticket_), kj::Own<Reaper::Kept>(kj::mv(links)));
}

void Clone::set_background(bool background) {
  manager::set_vmm_background(process_->vmm().pid(), background);
}

void Clone::set_stopped(bool stopped) {
  stopped_ = stopped;
  manager::set_vmm_stopped(process_->vmm().pid(), stopped);
}

kj::Promise<void> Clone::exited() { return exited_.addBranch(); }

void Clone::throw_vm_failed(const std::string& what) {
  std::string log = process_->vmm().log_tail();
  throw_api_error("vm-failed: " + what + " (template " + tpl_.info.name + ")" +
                  (log.empty() ? "" : "\nVMM log:\n" + log));
}

void Clone::rethrow_failure(kj::Exception&& e, const std::string& what) {
  std::string d = e.getDescription().cStr();
  for (const std::string remote = "remote exception: "; d.rfind(remote, 0) == 0;)
    d = d.substr(remote.size());
  for (const char* word :
       {"not-found:", "bad-request:", "overloaded:", "draining:", "vm-failed:", "too-large:"})
    if (d.rfind(word, 0) == 0) throw_api_error(d);
  if (e.getType() == kj::Exception::Type::UNIMPLEMENTED && alive())
    throw_api_error("bad-request: " + what + ": the guest's agent does not implement it (" + d +
                    ")");
  throw_vm_failed(what + ": " + d);
}

kj::Promise<void> Clone::restored() {
  auto ready = io_.provider->getTimer().timeoutAfter(
      static_cast<int64_t>(kRestoreTimeout.count()) * kj::MILLISECONDS, wait_ready(io_, *process_));
  return guard(
      ready.then([this](std::string line) { jail_ms_ = manager::ready_line_jail_ms(line); }),
      "restoring the clone");
}

kj::Promise<void> Clone::connect(bool reseed) {
  AgentConnectOptions o;
  o.confirm = reseed ? AgentConnectOptions::Confirm::kReseed : AgentConnectOptions::Confirm::kPing;
  return connect_agent_link(std::move(o));
}

kj::Promise<void> Clone::connect_with(std::function<void(AgentLink&)> first_calls) {
  AgentConnectOptions o;
  o.confirm = AgentConnectOptions::Confirm::kNone;  // the guest's accept confirms it
  o.first_calls = std::move(first_calls);
  return connect_agent_link(std::move(o));
}

kj::Promise<void> Clone::connect_agent_link(AgentConnectOptions o) {
  o.uds_path = process_->vsock_path();
  o.deadline = kConnectTimeout;
  o.keep_trying = [this] { return alive(); };
  auto agent =
      connect_agent(io_, o).then([this](kj::Own<AgentLink> link) { agent_ = kj::mv(link); });
  return guard(kj::mv(agent), "connecting to the clone's agent");
}

manager::OpenTemplate duplicate_template(const manager::OpenTemplate& tpl) {
  manager::OpenTemplate t;
  t.info = tpl.info;
  t.dir = tpl.dir;
  t.snapshot_dir = tpl.snapshot_dir;
  // A duplicate shares the open file description, and with it the shared flock.
  t.lock = UniqueFd(::fcntl(tpl.lock.get(), F_DUPFD_CLOEXEC, 0));
  if (!t.lock) throw_errno("template " + tpl.info.name + ": duplicate its lock");
  return t;
}

manager::OpenTemplate Clone::hold_template() const { return duplicate_template(tpl_); }

kj::Promise<void> Clone::connect_control_link() {
  if (control_) return kj::READY_NOW;
  auto control =
      connect_control(io_, process_->control_path()).then([this](kj::Own<ControlLink> link) {
        control_ = kj::mv(link);
      });
  return guard(kj::mv(control), "connecting to the clone's VMM control socket");
}

}  // namespace wisp::service
