// Confinement: what the jailed VMM gives up once its files are open (privileges) and as each
// thread starts (its seccomp filter).
#include <grp.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "vmm/jail/jail.h"
#include "vmm/jail/jail_root.h"

namespace wisp::jail {
namespace {

void set_limit(int resource, uint64_t value, const char* name) {
  rlimit r{value, value};
  if (::setrlimit(resource, &r) != 0) throw_errno(std::string("jail: setrlimit ") + name);
}

// Empties the bounding set, which only a holder of CAP_SETPCAP can: so before the uid changes.
void drop_bounding_set() {
  for (cap_value_t c = 0; c < static_cast<cap_value_t>(cap_max_bits()); ++c)
    if (cap_drop_bound(c) != 0 && errno != EINVAL) throw_errno("jail: dropping capability bound");
}

// Effective, permitted and inheritable sets cleared, and the ambient set.
void clear_capabilities() {
  cap_t none = cap_init();
  if (!none) throw_errno("jail: cap_init");
  int rc = cap_set_proc(none);
  int saved = errno;
  cap_free(none);
  errno = saved;
  if (rc != 0) throw_errno("jail: clearing capabilities");
  if (cap_reset_ambient() != 0) throw_errno("jail: clearing ambient capabilities");
}

}  // namespace

void Confinement::drop_privileges() {
  if (!active_) return;
  uint64_t t0 = now_ns();
  if (cgroup_ready_fd_ >= 0) {
    char c = 0;
    ssize_t n;
    while ((n = ::read(cgroup_ready_fd_, &c, 1)) < 0 && errno == EINTR) {
    }
    ::close(cgroup_ready_fd_);
    cgroup_ready_fd_ = -1;
    if (n != 1) throw Error("jail: the supervisor did not put the VM in its cgroup");
    LOG_DEBUG("jail: in the cgroup after %.3f ms more", static_cast<double>(now_ns() - t0) / 1e6);
  }
  install_sigsys_handler(report_);
  leave_proc();
  drop_bounding_set();
  // Before the uid changes: raising the hard limit above the starter's takes CAP_SYS_RESOURCE.
  set_limit(RLIMIT_NOFILE, kVmmMaxFiles, "RLIMIT_NOFILE");
  gid_t gid = static_cast<gid_t>(uid_);
  if (::setgroups(0, nullptr) != 0) throw_errno("jail: setgroups");
  if (::setresgid(gid, gid, gid) != 0) throw_errno("jail: setresgid " + std::to_string(gid));
  if (::setresuid(uid_, uid_, uid_) != 0) throw_errno("jail: setresuid " + std::to_string(uid_));
  clear_capabilities();
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("jail: no_new_privs");
  // The uid change cleared the parent-death signal: set it again, now that no credential
  // changes any more, then make sure the supervisor did not die before it was set.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) throw_errno("jail: PR_SET_PDEATHSIG");
  if (supervisor_fd_ >= 0) {
    bool gone = pipe_writer_gone(supervisor_fd_);
    ::close(supervisor_fd_);
    supervisor_fd_ = -1;
    if (gone) throw Error("jail: the supervisor is gone");
  }
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) throw_errno("jail: PR_SET_DUMPABLE");
  set_limit(RLIMIT_NPROC, threads_ + kVmmExtraThreads, "RLIMIT_NPROC");
  set_limit(RLIMIT_FSIZE, max_file_bytes_, "RLIMIT_FSIZE");
  set_limit(RLIMIT_CORE, 0, "RLIMIT_CORE");
  LOG_DEBUG("jail: privileges dropped %.3f ms", static_cast<double>(now_ns() - t0) / 1e6);
  // A write past RLIMIT_FSIZE (a console file that grew too large) fails with EFBIG instead of
  // killing the VM.
  ::signal(SIGXFSZ, SIG_IGN);
  jail_ns_ += now_ns() - t0;
}

void Confinement::enter_thread(ThreadKind kind) {
  if (!active_) return;
  uint64_t t0 = now_ns();
  install_thread_filter(kind, seccomp_);
  maybe_attempt_forbidden_call(kind);
  // The main thread's filter is on the VM's start-up path; the others run in parallel.
  if (kind == ThreadKind::kLoop) jail_ns_ += now_ns() - t0;
  LOG_DEBUG("jail: %s thread filter %.3f ms", thread_kind_name(kind),
            static_cast<double>(now_ns() - t0) / 1e6);
}

}  // namespace wisp::jail
