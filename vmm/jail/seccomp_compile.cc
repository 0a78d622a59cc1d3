#include "vmm/jail/seccomp_compile.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "base/error.h"
#include "base/file_io.h"
#include "base/unique_fd.h"
#include "vmm/jail/seccomp_table.h"

namespace wisp::jail {
namespace {

struct FilterDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using FilterCtx = std::unique_ptr<void, FilterDeleter>;

void add_rule(scmp_filter_ctx ctx, const SyscallRule& rule) {
  scmp_arg_cmp cmps[2];
  for (size_t i = 0; i < rule.check_count; ++i)
    cmps[i] = SCMP_CMP(rule.checks[i].index, SCMP_CMP_MASKED_EQ, rule.checks[i].mask,
                       rule.checks[i].value);
  int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, resolve_syscall(rule.name),
                                  static_cast<unsigned>(rule.check_count), cmps);
  if (rc < 0)
    throw Error(std::string("seccomp table: rule for ") + rule.name + ": " + std::strerror(-rc));
}

void add_ioctl(scmp_filter_ctx ctx, const IoctlRule& rule) {
  // The kernel reads the request as an unsigned int: compare the low 32 bits only.
  int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, rule.request));
  if (rc < 0)
    throw Error(std::string("seccomp table: ioctl ") + rule.name + ": " + std::strerror(-rc));
}

FilterCtx build_filter(ThreadKind kind, SeccompMode mode) {
  // kLogAll allows every call and logs it (audit type 1326), with no rules at all: a rule's
  // ALLOW would hide the call from the log that checks the tables.
  uint32_t fallback = mode == SeccompMode::kLogAll ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
  FilterCtx ctx(seccomp_init(fallback));
  if (!ctx) throw Error("seccomp_init failed");
  if (mode == SeccompMode::kLogAll) return ctx;
  const SeccompTable& table = seccomp_table(kind);
  for (const SyscallRule& rule : table.syscalls) add_rule(ctx.get(), rule);
  for (const IoctlRule& rule : table.ioctls) add_ioctl(ctx.get(), rule);
  return ctx;
}

}  // namespace

const char* thread_kind_name(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kLoop:
      return "loop";
    case ThreadKind::kVcpu:
      return "vcpu";
    case ThreadKind::kControl:
      return "control";
    case ThreadKind::kBlock:
      return "block";
  }
  return "unknown";
}

int resolve_syscall(const char* name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    throw Error(std::string("seccomp table: no syscall named \"") + name +
                "\" on this architecture");
  return nr;
}

const SeccompTable& seccomp_table(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kLoop:
      return loop_seccomp_table();
    case ThreadKind::kVcpu:
      return vcpu_seccomp_table();
    case ThreadKind::kControl:
      return control_seccomp_table();
    case ThreadKind::kBlock:
      return block_seccomp_table();
  }
  throw Error("seccomp: unknown thread kind");
}

std::vector<sock_filter> compile_filter(ThreadKind kind, SeccompMode mode) {
  FilterCtx ctx = build_filter(kind, mode);
  // libseccomp 2.5 (Debian 12) exports only to a file descriptor.
  UniqueFd fd(memfd_create("wisp-seccomp", MFD_CLOEXEC));
  if (!fd) throw_errno("memfd_create for the seccomp program");
  if (int rc = seccomp_export_bpf(ctx.get(), fd.get()); rc < 0)
    throw Error(std::string("seccomp: compiling the ") + thread_kind_name(kind) +
                " filter failed: " + std::strerror(-rc));
  off_t size = lseek(fd.get(), 0, SEEK_END);
  if (size < 0) throw_errno("lseek on the seccomp program");
  if (size == 0 || size % sizeof(sock_filter) != 0)
    throw Error("seccomp: libseccomp wrote a program of " + std::to_string(size) + " bytes");
  std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
  std::span<uint8_t> bytes(reinterpret_cast<uint8_t*>(program.data()), static_cast<size_t>(size));
  if (int err = pread_exact(fd.get(), 0, bytes)) {
    errno = err;
    throw_errno("reading the seccomp program back");
  }
  return program;
}

}  // namespace wisp::jail
