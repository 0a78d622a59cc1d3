#!/usr/bin/env python3
"""Checks the VMM's seccomp tables against what its threads really call.

Runs a representative workload with WISP_SECCOMP_LOG_ALL=1, where each jailed VMM thread
installs a filter that allows and logs every call (audit record type 1326, with the thread's
comm and the syscall number): `wisp exec`; `wisp run` with a drive, console output to a file,
ping, stats, pause, resume and a snapshot over the control socket; a restore of that snapshot
and a diff snapshot of it; `wisp template create`, two `wisp invoke` and a clone through a standby
VMM (wisp-pool-probe), twice: the second populates what the first wrote, as serve's warm
clones do. The records are read
as the audit daemon would (netlink), so none is lost to printk's rate limit or the kernel
log's size. Fails when a thread kind called something its table lacks, or when a table entry
was never called and is not in RARE below (each entry must be needed). Audit records carry
no arguments: the ioctl numbers and flag checks are reviewed from strace, and the unit test
(tests/unit/seccomp_filter_test.cc) checks each ioctl number against the kernel's headers.

Runs inside KVM as root (tests/integration/in-kvm), after `make all`; prints per kind
"allowed N, seen M". Exit status 0 when the tables match, 1 otherwise.
"""
import ctypes
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import stage  # noqa: E402

BUILD = os.path.join(ROOT, "build")
TABLES = {kind: os.path.join(ROOT, "vmm/jail/seccomp_%s_table.cc" % kind)
          for kind in ("loop", "vcpu", "control", "block")}

# Entries the workload does not reach, each needed on a path this check cannot drive.
RARE = {
    "loop": {
        "socket": "the guest connects to a host port (no test guest does)",
        "connect": "the same",
        "shutdown": "a guest half-closes a connection (vsock_test.py does; agents close both ways)",
        "mprotect": "malloc in a second arena, when the main one is locked by another thread",
        "restart_syscall": "a stop/continue signal during a timed wait",
        "writev": "virtio-net TX to a TAP (net_test.py does; this workload boots no NIC)",
        "lseek": "a full snapshot of a restored VM (SEEK_DATA in its memory file; a booted VM's "
                 "anonymous RAM is read through the pagemap)",
    },
    "vcpu": {
        "exit_group": "the SIGSYS handler",
        "close": "a device reset while a vsock connection is open",
        # The thread's malloc arena is made before the filter (libseccomp allocates).
        "mmap": "an allocation of 128 KiB or more (malloc's mmap threshold)",
        "munmap": "the same, freed",
        "mprotect": "the thread's arena grows",
        "restart_syscall": "a stop/continue signal during a timed wait",
    },
    "block": {
        "fdatasync": "a guest's flush request to a drive (`sync` writes a raw drive back "
                     "without one)",
        "exit_group": "the SIGSYS handler",
        # The thread's malloc arena is made before the filter (libseccomp allocates).
        "mmap": "the thread's arena needs another heap",
        "mprotect": "the thread's arena grows",
        "munmap": "the thread's arena shrinks",
        "restart_syscall": "a stop/continue signal during a timed wait",
    },
    "control": {
        "exit_group": "the SIGSYS handler",
        "mmap": "an allocation of 128 KiB or more (a large RPC message)",
        "munmap": "the same, freed",
        "restart_syscall": "a stop/continue signal during a timed wait",
    },
}

# The thread names wisp-vmm gives its threads (the kernel's comm=).
def kind_of_comm(comm):
    if comm == "wisp-vmm":
        return "loop"
    if re.fullmatch(r"vcpu\d+", comm):
        return "vcpu"
    if comm == "vmm-control":
        return "control"
    if comm == "vmm-block":
        return "block"
    return None


def table_names(kind):
    """The syscall names a table allows, read from its source (the entries' first argument)."""
    text = open(TABLES[kind]).read()
    names = set(re.findall(r'\ballow(?:_if)?\(\s*"(\w+)"', text))
    ioctls = re.search(r"IoctlRule kIoctls\[\] = \{(.*?)\n\};", text, re.S)
    if ioctls and re.search(r'\{"\w+"', ioctls.group(1)):
        names.add("ioctl")
    return names


class SyscallNames:
    """Numbers to names, as the VMM's filter knows them (libseccomp)."""

    def __init__(self):
        self.lib = ctypes.CDLL("libseccomp.so.2")
        self.lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_char_p
        self.lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]

    def __call__(self, nr):
        name = self.lib.seccomp_syscall_resolve_num_arch(0, nr)  # 0: the native arch
        return name.decode() if name else "syscall %d" % nr


# <linux/audit.h>
AUDIT_GET, AUDIT_SET, AUDIT_SECCOMP = 1000, 1001, 1326
AUDIT_STATUS_ENABLED, AUDIT_STATUS_PID = 0x1, 0x4
AUDIT_STATUS_RATE_LIMIT, AUDIT_STATUS_BACKLOG_LIMIT = 0x8, 0x10
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NETLINK_AUDIT = 9


class AuditReader:
    """Becomes the audit daemon for the run: enables audit, receives every record over
    netlink and keeps (comm, syscall) of the type 1326 ones."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        self.sock.bind((0, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
        self.records = []  # the bodies of type 1326 records
        self.status = None
        self.stopping = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        # Records to us, unthrottled; 0 for the backlog: no limit (the kernel queues what we
        # have not read yet instead of dropping or stalling the VMM).
        self._set(AUDIT_STATUS_ENABLED | AUDIT_STATUS_PID | AUDIT_STATUS_RATE_LIMIT |
                  AUDIT_STATUS_BACKLOG_LIMIT, enabled=1, pid=os.getpid())
        self.lost_before = self._lost()

    def _send(self, msg_type, payload):
        header = struct.pack("=IHHII", 16 + len(payload), msg_type, NLM_F_REQUEST | NLM_F_ACK,
                             0, 0)
        self.sock.sendto(header + payload, (0, 0))

    def _set(self, mask, enabled=0, pid=0):
        # struct audit_status: mask, enabled, failure, pid, rate_limit, backlog_limit, ...
        self._send(AUDIT_SET, struct.pack("=11I", mask, enabled, 0, pid, 0, 0, 0, 0, 0, 0, 0))

    def _lost(self):
        # The kernel's count of dropped records (audit_status.lost), from its AUDIT_GET reply,
        # which the reader thread parses.
        self.status = None
        self._send(AUDIT_GET, b"")
        for _ in range(600):
            if self.status is not None:
                return self.status[6]
            time.sleep(0.05)
        raise RuntimeError("no reply to AUDIT_GET")

    def _read(self):
        # Only collects here: under the nested testbed the records arrive slower than a busy
        # VMM makes them (the kernel queues the rest), so parsing waits for the end.
        while not self.stopping:
            data = self.sock.recv(1 << 20)
            while len(data) >= 16:
                length, msg_type = struct.unpack_from("=IH", data)
                body = data[16:length]
                if msg_type == AUDIT_SECCOMP:
                    self.records.append(body)
                elif msg_type == AUDIT_GET and len(body) >= 32:
                    self.status = struct.unpack_from("=8I", body)
                data = data[(length + 3) & ~3:]

    def seen(self):
        """{(comm, syscall number): count} of the records received."""
        comm_re, nr_re = re.compile(rb' comm="([^"]*)"'), re.compile(rb" syscall=(\d+)")
        out = {}
        for body in self.records:
            comm, nr = comm_re.search(body), nr_re.search(body)
            if comm and nr:
                key = (comm.group(1).decode(), int(nr.group(1)))
                out[key] = out.get(key, 0) + 1
        return out

    def finish(self):
        # Until the kernel's queue is drained: no new record for 3 s.
        count, quiet_since = -1, time.time()
        while time.time() - quiet_since < 3:
            if len(self.records) != count:
                count, quiet_since = len(self.records), time.time()
            time.sleep(0.5)
        lost = self._lost() - self.lost_before
        self._set(AUDIT_STATUS_PID, pid=0)
        self.stopping = True
        return lost


class Workload:
    def __init__(self, tmp):
        guest = [os.path.join(BUILD, "guest", f) for f in
                 ("bzImage", "vmlinux", "initramfs.cpio.gz", "agent-initramfs.cpio.gz",
                  "test-initramfs.cpio.gz")]
        self.wisp = os.path.join(stage(os.path.join(BUILD, "bin"), guest, tmp), "wisp")
        self.tmp = tmp
        self.env = dict(os.environ, WISP_SECCOMP_LOG_ALL="1", WISP_HOME=os.path.join(tmp, "home"))

    def path(self, name):
        return os.path.join(self.tmp, name)

    def wisp_ok(self, *args, timeout=600):
        p = subprocess.run([self.wisp, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError("wisp %s exited %d:\n%s" % (" ".join(args), p.returncode,
                                                           p.stderr[-3000:]))
        return p.stdout

    def start(self, *args):
        return subprocess.Popen([self.wisp, *args], env=self.env, stdin=subprocess.DEVNULL)

    def wait_console(self, vm, console, text, timeout=300):
        end = time.time() + timeout
        while time.time() < end:
            if vm.poll() is not None:
                raise RuntimeError("the VM exited %d before printing %r" % (vm.returncode, text))
            if os.path.exists(console) and text in open(console, errors="replace").read():
                return
            time.sleep(0.5)
        raise RuntimeError("no %r on %s" % (text, console))

    def stop(self, vm):
        if vm.poll() is None:
            vm.send_signal(signal.SIGTERM)
        vm.wait(timeout=120)

    def control(self, ctl, *calls):
        """Makes every call, even after one failed (the later ones still exercise the VMM)."""
        failed = []
        for call in calls:
            try:
                self.wisp_ok(*call, "--control-socket", ctl)
            except RuntimeError as e:
                failed.append(str(e))
        if failed:
            raise RuntimeError("\n".join(failed))

    def run(self):
        """Runs each part; returns the failures (a part that fails leaves its calls unseen)."""
        failures = []
        for name, part in (("wisp exec", self.exec_part), ("wisp run", self.run_part),
                           ("restore", self.restore_part), ("template", self.template_part)):
            print("workload: %s" % name, flush=True)
            try:
                part()
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print("workload: %s FAILED: %s" % (name, e), flush=True)
                failures.append(name)
        return failures

    def exec_part(self):
        self.wisp_ok("exec", "--", "sh", "-c", "echo out; echo err >&2")

    def run_part(self):
        """A drive, console output, control calls and a snapshot."""
        disk, console, ctl = (self.path(n) for n in ("disk.img", "console", "ctl"))
        with open(disk, "wb") as f:
            f.truncate(4 << 20)
        counter = ("echo drive > /dev/vda; sync; head -c 5 /dev/vda; echo; i=0; "
                   "while true; do i=$((i+1)); echo count=$i; sleep 0.2; done")
        vm = self.start("run", "--mem", "128", "--vcpus", "2", "--console", console,
                        "--control-socket", ctl, "--drive", disk,
                        "--cmdline", 'quiet wisp_action=cmd wisp_cmd="%s"' % counter)
        try:
            self.wait_console(vm, console, "count=3")
            self.control(ctl, ["vm", "ping"], ["vm", "stats"], ["vm", "pause"], ["vm", "resume"],
                         ["snapshot", "create", self.path("snap")], ["vm", "stats"])
        finally:
            self.stop(vm)

    def restore_part(self):
        """The snapshot restored, a diff snapshot of it."""
        console, ctl = self.path("console2"), self.path("ctl2")
        # The drive is given again: a snapshot names no host file by itself.
        vm = self.start("snapshot", "restore", self.path("snap"), "--console", console,
                        "--control-socket", ctl, "--drive", self.path("disk.img"))
        try:
            self.wait_console(vm, console, "count=")
            self.control(ctl, ["vm", "pause"], ["snapshot", "create", "--diff", self.path("diff")],
                         ["vm", "resume"], ["vm", "stats"])
        finally:
            self.stop(vm)

    def template_part(self):
        self.wisp_ok("template", "create", "echo", "--handler", "/bin/echo hello",
                     "--warmup", "1")
        for _ in range(2):
            self.wisp_ok("invoke", "echo")
        # A clone through a standby VMM (wisp-vmm standby, manager/vmm_pool.h): jailed before
        # its order, restored from the descriptors the order hands it.
        p = subprocess.run([os.path.join(os.path.dirname(self.wisp), "wisp-pool-probe"), "clone",
                            "echo", "", "2"], env=self.env, capture_output=True, text=True,
                           timeout=600, stdin=subprocess.DEVNULL)
        if p.returncode != 0 or '"out":"hello\\u000a"' not in p.stdout:
            raise RuntimeError("wisp-pool-probe exited %d:\n%s\n%s" % (p.returncode, p.stdout,
                                                                      p.stderr[-3000:]))


def compare(seen, names):
    """Prints each kind's figures; returns the number of problems."""
    by_kind = {k: set() for k in TABLES}
    for (comm, nr), _ in seen.items():
        kind = kind_of_comm(comm)
        if kind:
            by_kind[kind].add(names(nr))
    problems = 0
    for kind in TABLES:
        allowed, called = table_names(kind), by_kind[kind]
        print("%s: allowed %d, seen %d" % (kind, len(allowed), len(called)))
        for name in sorted(called - allowed):
            print("  MISSING %s: called by a %s thread, not in %s" %
                  (name, kind, os.path.relpath(TABLES[kind], ROOT)))
            problems += 1
        for name in sorted(allowed - called):
            if name in RARE[kind]:
                print("  rare    %s (%s)" % (name, RARE[kind][name]))
            else:
                print("  UNUSED  %s: in the %s table, never called" % (name, kind))
                problems += 1
    others = sorted({comm for comm, _ in seen if kind_of_comm(comm) is None})
    if others:
        print("note: records from other threads, ignored: %s" % ", ".join(others))
    return problems


def main():
    if os.geteuid() != 0:
        print("seccomp_tables_check: needs root (audit and the jail)", file=sys.stderr)
        return 1
    names = SyscallNames()
    reader = AuditReader()
    with tempfile.TemporaryDirectory(prefix="wisp-seccomp-") as tmp:
        try:
            failures = Workload(tmp).run()
        finally:
            lost = reader.finish()
    seen = reader.seen()
    problems = compare(seen, names)
    if not seen:
        print("FAIL: no seccomp log record at all (is WISP_SECCOMP_LOG_ALL honoured?)")
        return 1
    if lost:
        print("FAIL: the kernel lost %d audit records" % lost)
        return 1
    if failures:
        print("FAIL: workload parts failed (their calls are missing above): %s" %
              ", ".join(failures))
        return 1
    print("seccomp tables: %s" % ("OK" if problems == 0 else "%d problem(s)" % problems))
    return 0 if problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
