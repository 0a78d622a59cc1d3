#!/usr/bin/env python3
"""A busy disk does not hold the VMM's event loop. A 2-vCPU guest writes its drive in a loop
(`dd if=/dev/zero of=/dev/vda bs=1M oflag=direct conv=fsync`, so every pass ends with a flush)
while the host measures vsock round trips to a guest echo listener: the median round trip under
that load stays within 5x its idle value, and the event loop's longest iteration (`loop_max_ms`
in `wisp run --timings`; at -vv each new longest one past 10 ms is logged) stays under 50 ms. Before block I/O moved off the loop, each write and
each fdatasync ran on it, and every vsock packet waited behind them.

The drive lives in build/ (the testbed's /tmp is a tmpfs, where fdatasync costs nothing).
Run by ctest (label integration) inside KVM; uses build/guest/test-initramfs.cpio.gz.
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests/integration"))
from vsock_host import handshake  # noqa: E402

WISP = os.path.join(ROOT, "build/bin/wisp")
GUEST = os.path.join(ROOT, "build/guest")
INITRD = os.path.join(GUEST, "test-initramfs.cpio.gz")
ECHO_PORT, GO_PORT = 61, 62
DISK_MIB = 64
# The guest: an echo listener; then, once the host connects to GO_PORT, the dd loop.
GUEST_CMD = ("vsock_tool listen %d echo >/dev/null & sleep 1; echo loop: listeners up; "
             "vsock_tool listen -n 1 %d sink >/dev/null; echo loop: dd starts; "
             "while true; do dd if=/dev/zero of=/dev/vda bs=1M count=%d oflag=direct conv=fsync "
             "2>/dev/null; echo loop: dd pass; done" % (ECHO_PORT, GO_PORT, DISK_MIB // 2))
MSG = b"x" * 64


def kernel():
    vmlinux = os.path.join(GUEST, "vmlinux")
    return vmlinux if os.path.exists(vmlinux) else os.path.join(GUEST, "bzImage")


def round_trips(sock, seconds, at_least=20):
    """64-byte echo round trips for `seconds` (and at least `at_least` of them), in ms."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(out) < at_least:
        t0 = time.monotonic()
        sock.sendall(MSG)
        got = b""
        while len(got) < len(MSG):
            b = sock.recv(len(MSG) - len(got))
            if not b:
                raise ConnectionError("the guest's echo closed")
            got += b
        out.append((time.monotonic() - t0) * 1000)
        time.sleep(0.01)
    return out


class LoopLatencyTest(unittest.TestCase):
    def setUp(self):
        self.vm = None

    def start_vm(self):
        self.dir = tempfile.mkdtemp(prefix="wisp-loop-", dir=os.path.join(ROOT, "build"))
        self.disk = os.path.join(self.dir, "disk.img")
        with open(self.disk, "wb") as f:
            f.truncate(DISK_MIB << 20)
        self.uds = os.path.join(tempfile.mkdtemp(prefix="wisp-loop-"), "v.sock")
        self.console = os.path.join(self.dir, "console.log")
        self.vm = subprocess.Popen(
            [WISP, "run", "-v", "-v", "--kernel", kernel(), "--initrd", INITRD, "--mem", "256",
             "--vcpus", "2", "--drive", self.disk, "--vsock-uds", self.uds,
             "--console", self.console, "--timings",
             "--cmdline", 'quiet wisp_action=cmd wisp_cmd="%s"' % GUEST_CMD],
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def tearDown(self):
        self.stop_vm()

    def stop_vm(self):
        if self.vm is None:
            return
        if self.vm.poll() is None:
            self.vm.kill()
            self.vm.wait()
        self.vm = None
        for d in (self.dir, os.path.dirname(self.uds)):
            subprocess.run(["rm", "-rf", d])

    def wait_console(self, text, timeout=300):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.vm.poll() is not None:
                break
            if text in self.read_console():
                return
            time.sleep(0.2)
        self.fail("no %r on the console:\n%s" % (text, self.read_console()[-3000:]))

    def read_console(self):
        try:
            with open(self.console, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def measure(self):
        """One VM: (idle median, busy median, loop_max_ms, the slow iterations it logged)."""
        self.start_vm()
        self.wait_console("loop: listeners up")
        echo, _ = handshake(self.uds, ECHO_PORT, timeout=60)
        idle = statistics.median(round_trips(echo, 3))
        go, _ = handshake(self.uds, GO_PORT, timeout=60)
        go.sendall(b"go")
        go.shutdown(socket.SHUT_WR)
        go.recv(100)
        go.close()
        self.wait_console("loop: dd pass")  # a whole pass (writes and flush) is behind us
        busy_samples = round_trips(echo, 10)
        busy = statistics.median(busy_samples)
        passes = self.read_console().count("loop: dd pass")
        echo.close()
        self.vm.send_signal(signal.SIGTERM)
        _, err = self.vm.communicate(timeout=120)
        timings = [json.loads(l) for l in err.splitlines() if l.startswith("{")]
        self.assertTrue(timings, err[-2000:])
        loop_max = timings[-1]["loop_max_ms"]
        slow = "\n".join(l for l in err.splitlines() if "event loop:" in l)
        print(slow, file=sys.stderr)
        print("\nvsock round trip: idle median %.2f ms, under dd %.2f ms (p90 %.2f, %d samples, "
              "%d dd passes); event loop's longest iteration %.1f ms" %
              (idle, busy, sorted(busy_samples)[len(busy_samples) * 9 // 10],
               len(busy_samples), passes, loop_max), file=sys.stderr)
        self.stop_vm()
        return idle, busy, loop_max, slow

    def test_vsock_round_trip_and_loop_iteration_under_disk_load(self):
        # Two tries, a fresh VM each: the bounds are wall-clock times, and in the emulated testbed
        # the whole testbed stalls now and then when the host is busy (seen: 50.9 and 57 ms with
        # a compiler running beside it, 15-29 ms without). Block I/O on the loop fails both
        # (75 ms measured with it put back).
        failures = []
        for attempt in (1, 2):
            idle, busy, loop_max, slow = self.measure()
            if busy <= 5 * idle and loop_max < 50:
                return
            failures.append("try %d: round trip idle %.2f ms, under dd %.2f ms (bound 5x); "
                            "longest loop iteration %.1f ms (bound 50)\n%s" %
                            (attempt, idle, busy, loop_max, slow))
        self.fail("\n".join(failures))

if __name__ == "__main__":
    unittest.main(verbosity=2)
