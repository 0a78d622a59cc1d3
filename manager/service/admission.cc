#include "manager/service/admission.h"

namespace wisp::service {
namespace {

[[noreturn]] void fail(const std::string& message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

}  // namespace

Ticket::~Ticket() { admission_.release(key_, mem_mib_); }

Admission::~Admission() { fail_waiters("serve is shutting down"); }

std::string Admission::over_limit(const std::string& key, uint64_t mem_mib) const {
  if (limits_.max_vms && vms_ + 1 > limits_.max_vms)
    return std::to_string(vms_) + " of --max-vms " + std::to_string(limits_.max_vms) +
           " VMs are running";
  if (limits_.max_memory_mib && memory_mib() + mem_mib > limits_.max_memory_mib)
    return std::to_string(memory_mib()) + " MiB of --max-memory " +
           std::to_string(limits_.max_memory_mib) + " MiB are committed and this VM needs " +
           std::to_string(mem_mib) + " MiB";
  if (limits_.max_per_template && in_use(key) + 1 > limits_.max_per_template)
    return "template " + key + " has " + std::to_string(in_use(key)) + " of --max-per-template " +
           std::to_string(limits_.max_per_template) + " VMs running";
  return "";
}

kj::Own<Ticket> Admission::grant(const std::string& key, uint64_t mem_mib) {
  ++vms_;
  memory_mib_ += mem_mib;
  ++per_key_[key];
  return kj::heap<Ticket>(*this, key, mem_mib);
}

void Admission::release(const std::string& key, uint64_t mem_mib) {
  --vms_;
  memory_mib_ -= mem_mib;
  auto it = per_key_.find(key);
  if (it != per_key_.end() && --it->second == 0) per_key_.erase(it);
  admit_waiters();
}

void Admission::admit_waiters() {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (!it->fulfiller->isWaiting()) {  // timed out or cancelled
      it = waiters_.erase(it);
      continue;
    }
    std::string over = over_limit(it->key, it->mem_mib);
    if (over.empty()) {
      it->fulfiller->fulfill(grant(it->key, it->mem_mib));
      it = waiters_.erase(it);
      continue;
    }
    bool global = limits_.max_per_template == 0 || in_use(it->key) < limits_.max_per_template;
    if (global) return;  // first in line waits for the global budget; nobody passes it
    ++it;                // only its template is at its limit: others may go
  }
}

kj::Promise<kj::Own<Ticket>> Admission::acquire(const std::string& key, uint64_t mem_mib,
                                                kj::Duration deadline) {
  if (limits_.max_memory_mib && mem_mib + limits_.reserved_mib > limits_.max_memory_mib)
    fail("overloaded: a VM of template " + key + " needs " + std::to_string(mem_mib) +
         " MiB, more than the whole --max-memory " + std::to_string(limits_.max_memory_mib) +
         " MiB" +
         (limits_.reserved_mib
              ? " less the " + std::to_string(limits_.reserved_mib) + " MiB held for the pool"
              : std::string()));
  auto paf = kj::newPromiseAndFulfiller<kj::Own<Ticket>>();
  waiters_.push_back(Waiter{key, mem_mib, kj::mv(paf.fulfiller)});
  // In line behind the others; admitted at once if nothing ahead of it holds it back.
  admit_waiters();
  uint64_t ms = static_cast<uint64_t>(deadline / kj::MILLISECONDS);
  return paf.promise.exclusiveJoin(
      timer_.afterDelay(deadline).then([this, key, mem_mib, ms]() -> kj::Own<Ticket> {
        std::string over = over_limit(key, mem_mib);
        fail("overloaded: no capacity within the request's deadline of " + std::to_string(ms) +
             " ms (" + (over.empty() ? "earlier requests are waiting" : over) + ")");
      }));
}

kj::Maybe<kj::Own<Ticket>> Admission::try_acquire(const std::string& key, uint64_t mem_mib) {
  if (waiting() > 0 || !over_limit(key, mem_mib).empty()) return nullptr;
  return grant(key, mem_mib);
}

void Admission::fail_waiters(const std::string& message) {
  std::deque<Waiter> waiters;
  waiters.swap(waiters_);
  for (Waiter& w : waiters)
    if (w.fulfiller->isWaiting())
      w.fulfiller->reject(
          kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message)));
}

uint32_t Admission::waiting() {
  uint32_t n = 0;
  for (Waiter& w : waiters_)
    if (w.fulfiller->isWaiting()) ++n;
  return n;
}

uint32_t Admission::in_use(const std::string& key) const {
  auto it = per_key_.find(key);
  return it == per_key_.end() ? 0 : it->second;
}

}  // namespace wisp::service
