// The event-loop (main) thread's allow-list: the devices' back-ends (vsock bridge, block
// completions, rng, console), the control calls run on the loop (pause, resume, snapshot, stats)
// and the VMM's exit. No open: every file (even /proc/self/pagemap, GuestMemory's) is opened before
// the filter goes on, and a snapshot's files arrive as fds. Reviewed against strace and the
// kernel's log of a WISP_SECCOMP_LOG_ALL run (tests/integration/seccomp_tables_check.py).
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "vmm/jail/seccomp_table.h"

namespace wisp::jail {
namespace {

// MADV_POPULATE_WRITE (Linux 5.14; older libc headers lack it).
constexpr uint32_t kMadvisePopulateWrite = 23;

// socket()'s type without its SOCK_NONBLOCK and SOCK_CLOEXEC flags.
constexpr uint64_t kSocketTypeMask = 0xf;

constexpr SyscallRule kSyscalls[] = {
    // The event loop.
    allow("epoll_wait", "EventLoop::run"),
    allow("epoll_ctl", "EventLoop::add/remove: vsock connections come and go"),
    allow("read", "eventfds, timerfds, the stop signals' signalfd"),
    allow("write", "eventfd wake-ups and IRQs; the console; log lines"),
    allow("timerfd_settime",
          "EventLoop timers, VsockMuxer's retransmit timer, QueueThrottle (rate limits)"),
    allow("futex", "run_on_loop hand-offs, PauseGate, mutexes; joining threads at exit"),
    allow("close", "vsock connections closed; teardown"),
    // The vsock bridge (VsockMuxer) to the host's Unix sockets.
    allow("accept4", "a host client connects to the vsock bridge"),
    allow("recvfrom", "the bridge peeks at and reads the \"CONNECT <port>\" line"),
    allow("readv", "guest-bound data from a host socket"),
    // virtio-net's TAP back-end (frames in with read, above).
    allow("writev", "VirtioNet: a guest frame out to the TAP, straight from guest memory"),
    allow("sendmsg", "host-bound data (MSG_NOSIGNAL)"),
    allow("shutdown", "the guest half-closed a connection: SHUT_WR on its host socket"),
    allow_if("socket", "the guest connects to a host port: an AF_UNIX stream socket only",
             int_eq(0, AF_UNIX), {1, kSocketTypeMask, SOCK_STREAM}),
    allow("connect", "... to <uds>_<port>"),
    allow("unlink", "the bridge's and the control socket's paths removed at exit"),
    // virtio-rng and snapshot ids.
    allow("getrandom", "VirtioRng fills the guest's buffers; a snapshot's id"),
    // Block I/O runs on its own thread (seccomp_block_table.cc); these are the snapshot's.
    allow("pread64", "/proc/self/pagemap (stats, diff snapshots), KVM vCPU statistics files"),
    allow("pwrite64", "the snapshot's state and memory files"),
    // Snapshots (pause, KVM_GET_* below, write the files the caller handed over).
    allow("tgkill", "VcpuRunner::kick: pthread_kill stops KVM_RUN for a pause"),
    allow("getpid", "pthread_kill's tgkill names this process"),
    allow("rt_sigprocmask", "pthread_kill blocks signals around tgkill; exit"),
    allow("lseek",
          "GuestMemory finds a snapshot memory file's data and holes (SEEK_DATA, SEEK_HOLE)"),
    allow("ftruncate", "the memory file gets the guest's size"),
    allow("fsync", "the snapshot's files reach the disk"),
    allow("newfstatat", "fstat of the memory file (its disk usage); a drive's identity (stat)"),
    // TODO(security): record a drive's identity when it is opened, not at snapshot time.
    allow("readlink", "BlockKind::record_identity: realpath of a drive at snapshot time"),
    // Memory.
    allow("brk", "malloc grows the main heap"),
    allow_if("mmap", "large allocations (no PROT_EXEC)", bits_clear(2, PROT_EXEC)),
    allow_if("mprotect", "malloc (no PROT_EXEC)", bits_clear(2, PROT_EXEC)),
    allow("munmap", "large allocations freed; guest memory unmapped at exit"),
    allow_if("madvise", "control: populateWritable makes guest pages private copies",
             int_eq(2, kMadvisePopulateWrite)),
    allow("exit_group", "the VMM exits; the SIGSYS handler"),
    allow("restart_syscall", "a call interrupted by a stop/continue signal is resumed"),
};

constexpr uint32_t kKvmRegsSize = 144, kKvmSregsSize = 312, kKvmFpuSize = 416,
                   kKvmMsrsHeaderSize = 8, kKvmLapicSize = 1024, kKvmMpStateSize = 4,
                   kKvmVcpuEventsSize = 64, kKvmDebugRegsSize = 128, kKvmXsaveSize = 4096,
                   kKvmXcrsSize = 392, kKvmIrqchipSize = 520, kKvmPitState2Size = 112,
                   kKvmClockDataSize = 48;

// A snapshot reads every vCPU's and the VM's state here (Vcpu::save_state, Vm::save_state),
// in vmm/kvm/kvm_state.cc's order; a pause stops the guest's clock.
constexpr IoctlRule kIoctls[] = {
    {"KVM_KVMCLOCK_CTRL", kvm_io(0xad), "VcpuRunner::pause tells the guest it was stopped"},
    {"KVM_GET_MP_STATE", kvm_ior(0x98, kKvmMpStateSize), "Vcpu::save_state"},
    {"KVM_GET_REGS", kvm_ior(0x81, kKvmRegsSize), "Vcpu::save_state"},
    {"KVM_GET_SREGS", kvm_ior(0x83, kKvmSregsSize), "Vcpu::save_state"},
    {"KVM_GET_FPU", kvm_ior(0x8c, kKvmFpuSize), "Vcpu::save_state"},
    {"KVM_GET_XSAVE", kvm_ior(0xa4, kKvmXsaveSize), "Vcpu::save_state, no KVM_CAP_XSAVE2"},
    {"KVM_GET_XSAVE2", kvm_ior(0xcf, kKvmXsaveSize), "Vcpu::save_state"},
    {"KVM_GET_XCRS", kvm_ior(0xa6, kKvmXcrsSize), "Vcpu::save_state"},
    {"KVM_GET_DEBUGREGS", kvm_ior(0xa1, kKvmDebugRegsSize), "Vcpu::save_state"},
    {"KVM_GET_LAPIC", kvm_ior(0x8e, kKvmLapicSize), "Vcpu::save_state"},
    {"KVM_GET_TSC_KHZ", kvm_io(0xa3), "Vcpu::save_state"},
    {"KVM_GET_MSRS", kvm_iowr(0x88, kKvmMsrsHeaderSize), "Vcpu::save_state"},
    {"KVM_GET_VCPU_EVENTS", kvm_ior(0x9f, kKvmVcpuEventsSize), "Vcpu::save_state"},
    {"KVM_GET_IRQCHIP", kvm_iowr(0x62, kKvmIrqchipSize), "Vm::save_state: PICs, IOAPIC"},
    {"KVM_GET_PIT2", kvm_ior(0x9f, kKvmPitState2Size), "Vm::save_state"},
    {"KVM_GET_CLOCK", kvm_ior(0x7c, kKvmClockDataSize),
     "Vm::save_state, a pause holding the clock"},
    {"KVM_SET_CLOCK", kvm_iow(0x7b, kKvmClockDataSize), "resume after a pause that held the clock"},
    // virtio-net: the offloads the guest negotiated, set once per driver activation.
    {"TUNSETOFFLOAD", TUNSETOFFLOAD, "TapBackend::set_offloads"},
    // The console on a terminal (wisp run --console stdio): set back from raw mode at exit.
    {"TCSETS", TCSETS, "RawTerminal's destructor (tcsetattr)"},
    {"TCGETS", TCGETS, "tcsetattr reads the settings back"},
};

}  // namespace

const SeccompTable& loop_seccomp_table() {
  static constexpr SeccompTable kTable{kSyscalls, kIoctls};
  return kTable;
}

}  // namespace wisp::jail
