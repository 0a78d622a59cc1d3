#!/usr/bin/env python3
"""Rate limiters (Firecracker's token buckets, base/token_bucket.h) on a real KVM: a guest over
its limit is slowed to it, never failed.

- virtio-blk: a guest reads 4 MiB of its drive with O_DIRECT through `--drive IMG,bw=1M,
  refill-ms=100` (a bucket of 100 KiB, 40 times less than what is read; without the limit,
  another VM must read it at least 1.5 times faster); then the same VM is
  snapshotted while it waits, and a clone restored from the snapshot (its limit comes from the
  snapshot) reads another 4 MiB. Both rates stay within 10 % of 1 MiB/s.
- virtio-net TX: `wisp exec --net tap=...,tx-bw=128K,refill-ms=100 --network` sends 1 MiB
  over TCP to a server in the test's own network namespace; the server measures the rate
  (within 10 % of 128 KiB/s; the limiter counts Ethernet bytes, the server TCP payload), after
  512 KiB sent without a limit, which must go at least 1.3 times faster. Lower than the disk's:
  unlimited, the nested testbed's guest sends only 500-650 KiB/s through TCP, and as little as
  240 KiB/s while the host is busy (seen with builds beside it), so a higher limit would
  measure the guest, not the limiter. Then a clone does the same: a template made
  with that NIC limit (`wisp template create --net tap=...,tx-bw=128K,...`), called by
  `wisp invoke`, keeps to it too.

Times are the guest's (kvmclock) and the host's: both real time, also in the nested testbed.
Needs root for the network test. Run by ctest (label integration) inside KVM.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
sys.path.insert(0, os.path.join(ROOT, "tests/integration"))
from vmrun import stage_wisp, wait_for  # noqa: E402
from vsock_host import handshake  # noqa: E402

BUILD = os.path.join(ROOT, "build")
GUEST = os.path.join(BUILD, "guest")
WISP = os.environ.get("WISP_BIN", os.path.join(BUILD, "bin/wisp"))
INITRD = os.path.join(GUEST, "test-initramfs.cpio.gz")
LIMIT = 1 << 20  # bytes per second, the drive's
NET_LIMIT, NET_BYTES = 128 << 10, 1 << 20
READ_MIB = 4
GO_PORT = 62
# Reads READ_MIB MiB at offset `skip` MiB, timed by the guest's uptime (10 ms steps).
READ = ("read a x < /proc/uptime; dd if=/dev/%%s of=/dev/null bs=64k count=%d skip=%%d "
        "iflag=direct 2>/dev/null; read b x < /proc/uptime; echo rl: read %%d $a $b"
        % (READ_MIB * 16))
# The guest: one timed read, then it waits for the host on vsock before the second.
GUEST_CMD = (READ % ("vda", 0, 1) +
             "; echo rl: waiting; vsock_tool listen -n 1 %d sink >/dev/null; " % GO_PORT +
             READ % ("vda", READ_MIB * 16, 2) + "; echo rl: done")
# A VM of its own reads the same without a limit: what the guest manages by itself. (Not a
# second drive of the limited VM: the jail's thread limit, vCPUs + 4, has no room for a second
# block I/O thread beside the control socket's.)
FREE_CMD = READ % ("vda", 0, 0) + "; echo rl: done"


def kernel():
    vmlinux = os.path.join(GUEST, "vmlinux")
    return vmlinux if os.path.exists(vmlinux) else os.path.join(GUEST, "bzImage")


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def reads(console):
    """{n: seconds} of the guest's timed reads so far."""
    text = read_text(console)
    return {int(n): float(b) - float(a)
            for n, a, b in re.findall(r"rl: read (\d) ([\d.]+) ([\d.]+)\r?\n", text)}


class BlockRateLimitTest(unittest.TestCase):
    def setUp(self):
        # /tmp: Unix sockets cannot live on the testbed's 9p share (build/), and the image
        # and the snapshot read faster from its tmpfs than the limit.
        self.dir = tempfile.mkdtemp(prefix="wisp-rl-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.disk = os.path.join(self.dir, "disk.img")
        with open(self.disk, "wb") as f:
            f.truncate(2 * READ_MIB << 20)

    def popen(self, *args):
        vm = subprocess.Popen([WISP, *args], stdin=subprocess.DEVNULL)
        self.addCleanup(vm.wait)
        self.addCleanup(vm.kill)
        return vm

    def check_rate(self, what, seconds):
        rate = (READ_MIB << 20) / seconds
        print(f"rate_limit_test: {what}: {READ_MIB} MiB in {seconds:.2f} s = "
              f"{rate / LIMIT:.3f} x the limit", file=sys.stderr)
        self.assertLess(abs(rate - LIMIT), 0.1 * LIMIT, f"{what}: {rate:.0f} B/s")

    def test_reads_and_a_clones_reads_keep_to_the_limit(self):
        free_console = os.path.join(self.dir, "free.console")
        free_vm = self.popen("run", "--kernel", kernel(), "--initrd", INITRD, "--mem", "128",
                             "--drive", self.disk + ",ro", "--console", free_console,
                             "--cmdline", 'quiet wisp_action=cmd wisp_cmd="%s"' % FREE_CMD)
        wait_for(lambda: 0 in reads(free_console) or free_vm.poll() is not None, 120,
                 "the unlimited read")
        self.assertIn(0, reads(free_console), "the VM exited before its read")
        free_vm.kill()
        free_vm.wait()
        free = (READ_MIB << 20) / reads(free_console)[0]
        print(f"rate_limit_test: unlimited: {free / LIMIT:.2f} x the limit", file=sys.stderr)
        # Otherwise the test could not tell the limiter from a slow guest.
        self.assertGreater(free, 1.5 * LIMIT, "the guest reads too slowly to test the limit")

        console, ctl = os.path.join(self.dir, "vm.console"), os.path.join(self.dir, "vm.ctl")
        uds = os.path.join(self.dir, "v.sock")
        vm = self.popen("run", "--kernel", kernel(), "--initrd", INITRD, "--mem", "128",
                        "--drive", self.disk + ",ro,bw=1M,refill-ms=100", "--vsock-uds", uds,
                        "--console", console, "--control-socket", ctl,
                        "--cmdline", 'quiet wisp_action=cmd wisp_cmd="%s"' % GUEST_CMD)
        wait_for(lambda: 1 in reads(console) or vm.poll() is not None, 120, "the first read")
        self.assertIn(1, reads(console), "the VM exited before its read")
        self.check_rate("boot, read", reads(console)[1])
        wait_for(lambda: "rl: waiting" in read_text(console), 30, "the guest to wait")
        time.sleep(1)  # the listener is up
        snap = os.path.join(self.dir, "snap")
        subprocess.run([WISP, "snapshot", "create", "--control-socket", ctl, snap], check=True,
                       timeout=120, stdin=subprocess.DEVNULL)
        vm.kill()
        vm.wait()
        clone_console = os.path.join(self.dir, "clone.console")
        clone_uds = os.path.join(self.dir, "c.sock")
        clone = self.popen("snapshot", "restore", snap, "--drive", self.disk + ",ro",
                           "--vsock-uds", clone_uds, "--console", clone_console)
        wait_for(lambda: os.path.exists(clone_uds), 60, "the clone's vsock socket")
        sock = wait_for(lambda: self.try_connect(clone_uds), 60, "the clone's listener")
        sock.close()
        wait_for(lambda: 2 in reads(clone_console) or clone.poll() is not None, 60,
                 "the clone's read")
        self.assertIn(2, reads(clone_console), "the clone exited before its read")
        self.check_rate("clone, read", reads(clone_console)[2])

    @staticmethod
    def try_connect(uds):
        try:
            return handshake(uds, GO_PORT, 10)[0]
        except (OSError, ConnectionError):
            return None


SERVER = r"""
import json, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("listening", flush=True)
c, _ = s.accept(); want = int(sys.argv[3]); got = 0; first = last = None
while got < want:
    b = c.recv(1 << 16)
    if not b: break
    last = time.monotonic(); first = first or last; got += len(b)
c.close(); print(json.dumps({"bytes": got, "seconds": last - first if first else 0}), flush=True)
"""


class NetRateLimitTest(unittest.TestCase):
    HOST, GUEST_ADDR, PORT, TAP = "10.78.0.1", "10.78.0.2", 9000, "wrltap0"

    def test_tx_keeps_to_the_limit(self):
        if os.geteuid() != 0:
            self.skipTest("network namespaces and TAPs need root")
        tmp = tempfile.mkdtemp(prefix="wisp-rl-net-")
        self.addCleanup(shutil.rmtree, tmp, True)
        wisp = stage_wisp(BUILD, os.path.join(tmp, "wisp"))
        ns = f"wisp-rl-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", ns], check=False)
        nsenter = ["nsenter", f"--net=/run/netns/{ns}"]
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "tuntap", "add", "dev", self.TAP, "mode", "tap"],
                     ["ip", "addr", "add", f"{self.HOST}/24", "dev", self.TAP],
                     ["ip", "link", "set", self.TAP, "up"]):
            subprocess.run(nsenter + argv, check=True)
        self.wisp, self.nsenter = wisp, nsenter
        # Unlimited first: what the guest manages by itself (about 2x the limit in the
        # testbed), so that the limited rate below is the limiter's, not the guest's.
        free = self.send(NET_BYTES // 2, "")
        print(f"rate_limit_test: net TX unlimited: {free / NET_LIMIT:.2f} x the limit",
              file=sys.stderr)
        self.assertGreater(free, 1.3 * NET_LIMIT, "the guest sends too slowly to test the limit")
        rate = self.send(NET_BYTES, ",tx-bw=128K,refill-ms=100")
        print(f"rate_limit_test: net TX: {NET_BYTES >> 20} MiB at {rate / NET_LIMIT:.3f} x the "
              "limit", file=sys.stderr)
        self.assertLess(abs(rate - NET_LIMIT), 0.1 * NET_LIMIT, f"{rate:.0f} B/s")
        # A clone: a template made with the limit on its NIC (the snapshot holds it), whose
        # handler sends the same; `wisp invoke` restores a clone on the TAP and calls it.
        env = dict(os.environ, WISP_HOME=os.path.join(tmp, "home"))
        handler = f"sh -c 'head -c {NET_BYTES} /dev/zero | nc {self.HOST} {self.PORT}; echo sent'"
        made = subprocess.run(
            self.nsenter + [self.wisp, "template", "create", "rltpl", "--mem", "256", "--net",
                            f"tap={self.TAP},ip={self.GUEST_ADDR}/24,gw={self.HOST},"
                            "tx-bw=128K,refill-ms=100", "--network", "--warmup", "0",
                            "--handler", handler],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        self.assertEqual(made.returncode, 0, made.stdout + made.stderr)
        rate = self.send(NET_BYTES, None, [self.wisp, "invoke", "rltpl", "-n", "--timeout",
                                           "120"], env)
        print(f"rate_limit_test: a clone's net TX: {NET_BYTES >> 20} MiB at "
              f"{rate / NET_LIMIT:.3f} x the limit", file=sys.stderr)
        self.assertLess(abs(rate - NET_LIMIT), 0.1 * NET_LIMIT, f"clone: {rate:.0f} B/s")

    def send(self, total, limit, argv=None, env=None):
        """Bytes per second at which a `wisp exec --net ...LIMIT` guest (or `argv`, a call that
        sends them) sends `total` bytes to a server in the namespace, as the server measures
        them (first byte to last)."""
        server = subprocess.Popen(self.nsenter + [sys.executable, "-c", SERVER, self.HOST,
                                                  str(self.PORT), str(total)],
                                  stdout=subprocess.PIPE, text=True)
        self.addCleanup(server.stdout.close)
        self.addCleanup(server.wait)
        self.addCleanup(server.kill)
        self.assertEqual(server.stdout.readline().strip(), "listening")
        cmd = f"head -c {total} /dev/zero | nc {self.HOST} {self.PORT}; echo sent"
        if argv is None:
            argv = [self.wisp, "exec", "--mem", "256", "--net",
                    f"tap={self.TAP},ip={self.GUEST_ADDR}/24,gw={self.HOST}{limit}",
                    "--network", "--", "/bin/sh", "-c", cmd]
        r = subprocess.run(self.nsenter + argv, capture_output=True, text=True, timeout=180,
                           check=False, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        result = json.loads(server.stdout.readline())
        self.assertEqual(result["bytes"], total, result)
        return result["bytes"] / result["seconds"]

if __name__ == "__main__":
    unittest.main(verbosity=2)
