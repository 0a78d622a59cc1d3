#include "agent/seccomp_policy.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/socket.h>

#include <array>

namespace wisp::agent {
namespace {

constexpr std::array kDenied = {
    DeniedSyscall{"ptrace", "inspect or hijack other processes"},
    DeniedSyscall{"process_vm_readv", "read another process's memory"},
    DeniedSyscall{"process_vm_writev", "write another process's memory"},
    DeniedSyscall{"mount", "change the filesystem view"},
    DeniedSyscall{"umount2", "uncover what the sandbox's mounts hide"},
    DeniedSyscall{"move_mount", "new mount API"},
    DeniedSyscall{"open_tree", "new mount API"},
    DeniedSyscall{"fsopen", "new mount API"},
    DeniedSyscall{"fsmount", "new mount API"},
    DeniedSyscall{"fsconfig", "new mount API"},
    DeniedSyscall{"fspick", "new mount API"},
    DeniedSyscall{"mount_setattr", "new mount API"},
    DeniedSyscall{"pivot_root", "change the root"},
    DeniedSyscall{"chroot", "change the root (classic escape helper)"},
    DeniedSyscall{"setns", "join another namespace"},
    DeniedSyscall{"unshare", "new namespaces (user namespaces grant capabilities)"},
    DeniedSyscall{"kexec_load", "replace the running kernel"},
    DeniedSyscall{"kexec_file_load", "replace the running kernel"},
    DeniedSyscall{"init_module", "load kernel code"},
    DeniedSyscall{"finit_module", "load kernel code"},
    DeniedSyscall{"delete_module", "unload kernel code"},
    DeniedSyscall{"bpf", "load BPF programs, a large kernel attack surface"},
    DeniedSyscall{"perf_event_open", "profiling interface, side channels and kernel bugs"},
    DeniedSyscall{"keyctl", "kernel keyrings are not namespaced"},
    DeniedSyscall{"add_key", "kernel keyrings are not namespaced"},
    DeniedSyscall{"request_key", "kernel keyrings are not namespaced"},
    DeniedSyscall{"reboot", "end the VM"},
    DeniedSyscall{"swapon", "change system memory"},
    DeniedSyscall{"swapoff", "change system memory"},
    DeniedSyscall{"open_by_handle_at", "open files by handle, bypassing mounts"},
    DeniedSyscall{"name_to_handle_at", "companion of open_by_handle_at"},
    DeniedSyscall{"userfaultfd", "stall the kernel at will (race exploitation aid)"},
    DeniedSyscall{"iopl", "raw I/O port access"},
    DeniedSyscall{"ioperm", "raw I/O port access"},
    DeniedSyscall{"settimeofday", "the guest clock is the agent's"},
    DeniedSyscall{"clock_settime", "the guest clock is the agent's"},
    DeniedSyscall{"clock_adjtime", "the guest clock is the agent's"},
    DeniedSyscall{"adjtimex", "the guest clock is the agent's"},
    DeniedSyscall{"acct", "process accounting to a file"},
    DeniedSyscall{"quotactl", "filesystem quotas"},
    DeniedSyscall{"lookup_dcookie", "kernel profiling helper"},
    DeniedSyscall{"syslog", "read or clear the kernel log"},
    DeniedSyscall{"vhangup", "hang up the terminal"},
    DeniedSyscall{"personality", "legacy execution domains (e.g. READ_IMPLIES_EXEC)"},
    DeniedSyscall{"io_uring_setup", "io_uring performs syscalls that seccomp never sees"},
    DeniedSyscall{"io_uring_enter", "io_uring performs syscalls that seccomp never sees"},
    DeniedSyscall{"io_uring_register", "io_uring performs syscalls that seccomp never sees"},
    DeniedSyscall{"fanotify_init", "filesystem-wide event monitoring"},
    DeniedSyscall{"kcmp", "compare kernel objects of other processes"},
    DeniedSyscall{"nfsservctl", "obsolete kernel NFS server interface"},
    DeniedSyscall{"uselib", "obsolete library loader"},
    DeniedSyscall{"vm86", "not on x86_64; denied where it exists"},
};

}  // namespace

std::span<const DeniedSyscall> denied_syscalls() { return kDenied; }

int load_handler_seccomp_filter() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return -ENOMEM;
  int rc = 0;
  for (const DeniedSyscall& s : kDenied) {
    int nr = seccomp_syscall_resolve_name(s.name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    if (rc < 0) goto out;
  }
  // vsock is not network-namespaced: without this rule any process could dial the host or
  // the agent's own port, with or without handler.network.
  rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                        SCMP_A0(SCMP_CMP_EQ, AF_VSOCK));
  if (rc < 0) goto out;
  rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socketpair), 1,
                        SCMP_A0(SCMP_CMP_EQ, AF_VSOCK));
  if (rc < 0) goto out;
  // New user namespaces would give the handler a full capability set inside them.
  rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                        SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
  if (rc < 0) goto out;
  // clone3 passes flags in memory, which seccomp cannot inspect: ENOSYS makes glibc fall back
  // to clone, whose flags the rule above checks.
  rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc < 0) goto out;
  // Terminal input injection.
  rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                        SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, 0x5412u /* TIOCSTI */));
  if (rc < 0) goto out;
  rc = seccomp_load(ctx);
out:
  seccomp_release(ctx);
  return rc;
}

}  // namespace wisp::agent
