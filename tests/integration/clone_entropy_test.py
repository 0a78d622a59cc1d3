#!/usr/bin/env python3
"""Clones of one snapshot never share random numbers, on a real KVM.

- Debian's stock kernel (linux-image-amd64, which has CONFIG_VMGENID; the cloud flavour does
  not) with no agent at all: wisp's VM generation id changes at each restore and the kernel
  reseeds on its ACPI notify, so two clones of a VM snapshotted at uptime above 150 s read
  different /dev/urandom bytes at once.
- wisp's agent guest: the agent's reseed (RNDADDENTROPY then RNDRESEEDCRNG) before the first
  call, so the first call of each clone of a template snapshotted at uptime above 150 s reads
  different getrandom() and /dev/urandom bytes, though that call runs in the exec sandbox the
  agent set up before the snapshot (agent/spare_sandbox.h; its timings say "preforked").
- A warm Python worker: the agent's "resumed" notice makes python_worker reseed `random`.

Why 150 s: for its first 120 s Linux reseeds its CRNG every uptime/2, later once a minute, so a
template snapshotted late hands its clones a CRNG that will not reseed by itself for up to a
minute. The guest's clock is real time (kvmclock), so reaching it costs 150 s of waiting in the
template's guest, in the testbed as on hardware; each test waits once.

Run by ctest (label integration) inside KVM, like snapshot_test.py.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import stage_wisp, wait_for  # noqa: E402

BUILD = os.path.join(ROOT, "build")
PY_ROOTFS = os.path.join(BUILD, "guest/python-rootfs.ext4")
DEBIAN_KERNEL = os.path.join(BUILD, "guest/debian/vmlinuz")  # fetch-cloud-kernel.sh ... amd64
MIN_UPTIME = 150

# Each second: the uptime, 16 bytes of /dev/urandom, and how often the kernel has logged a
# reseed "due to virtual machine fork" (what drivers/virt/vmgenid.c causes). The pattern's
# brackets keep it from matching itself: the command line is in the kernel log too.
STOCK_LOOP = ("echo vmgenid=$(ls /sys/bus/acpi/drivers/vmgenid 2>/dev/null | grep -c :); "
              "while true; do read up idle < /proc/uptime; "
              "echo up=${up%.*} rnd=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n') "
              "fork=$(dmesg | grep -c 'crng reseeded due to [v]irtual machine'); sleep 1; done")

# An exec handler that, during the warm-up, waits until the guest's uptime passes MIN_UPTIME
# (45 s at most per call, under the warm-up's 60 s limit); clones are past it and answer at
# once with getrandom() and /dev/urandom bytes.
AGENT_HANDLER = ("import os,time;"
                 "up=float(open('/proc/uptime').read().split()[0]);"
                 "time.sleep(max(0,min(45,%d-up)));"
                 "print(os.getrandom(16).hex(),open('/dev/urandom','rb').read(16).hex(),"
                 "int(up))" % (MIN_UPTIME + 2))

WORKER = ("import random,sys;sys.path.insert(0,'/usr/lib/wisp');import python_worker as w;"
          "w.serve(lambda p:repr(random.random()))")



def samples(path):
    """(uptime, random hex, reseeds logged) for each complete line of a console file."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    return [(int(u), r, int(n)) for u, r, n in
            re.findall(r"up=(\d+) rnd=([0-9a-f]{32}) fork=(\d+)\r?\n", text)]


class CloneEntropyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wisp-entropy-")
        cls.wisp = stage_wisp(BUILD, cls.tmp)
        cls.guest = os.path.join(cls.tmp, "guest")
        cls.env = dict(os.environ, WISP_HOME=os.path.join(cls.tmp, "home"))
        cls.stock_vm = None
        if os.path.exists(DEBIAN_KERNEL):
            # Booted first, so that its wait for MIN_UPTIME runs while the other tests do theirs
            # (an idle guest costs the testbed little): the waits overlap instead of adding up.
            cls.stock_vm = cls.start_stock_vm()

    @classmethod
    def tearDownClass(cls):
        if cls.stock_vm:
            cls.stock_vm.kill()
            cls.stock_vm.wait()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def start_stock_vm(cls):
        kernel = shutil.copy(DEBIAN_KERNEL, os.path.join(cls.tmp, "debian-vmlinuz"))
        cls.stock_console = os.path.join(cls.tmp, "stock.console")
        cls.stock_ctl = os.path.join(cls.tmp, "stock.ctl")
        return subprocess.Popen(
            [cls.wisp, "run", "--kernel", kernel, "--initrd",
             os.path.join(cls.guest, "initramfs.cpio.gz"), "--mem", "512",
             "--console", cls.stock_console, "--control-socket", cls.stock_ctl, "--cmdline",
             'quiet wisp_action=cmd wisp_cmd="%s"' % STOCK_LOOP],
            stdin=subprocess.DEVNULL, env=cls.env)

    def run_wisp(self, *args, timeout=300):
        p = subprocess.run([self.wisp, *args], capture_output=True, text=True, timeout=timeout,
                           env=self.env, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            self.fail("wisp %s exited %d:\n%s" % (" ".join(args), p.returncode, p.stderr[-3000:]))
        return p.stdout

    def run_wisp_timed(self, *args, timeout=300):
        """run_wisp for a command with --timings: (stdout, the JSON line on stderr)."""
        p = subprocess.run([self.wisp, *args], capture_output=True, text=True, timeout=timeout,
                           env=self.env, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            self.fail("wisp %s exited %d:\n%s" % (" ".join(args), p.returncode, p.stderr[-3000:]))
        lines = [l for l in p.stderr.splitlines() if l.startswith("{")]
        self.assertTrue(lines, "no timings line: " + p.stderr[-2000:])
        return p.stdout, json.loads(lines[-1])

    def path(self, name):
        return os.path.join(self.tmp, name)

    def popen(self, *args):
        vm = subprocess.Popen([self.wisp, *args], stdin=subprocess.DEVNULL, env=self.env)
        self.addCleanup(vm.wait)
        self.addCleanup(vm.kill)
        return vm

    @unittest.skipUnless(os.path.exists(DEBIAN_KERNEL), "no " + DEBIAN_KERNEL + " (run "
                         "tests/integration/fetch-cloud-kernel.sh build/guest/debian "
                         "linux-image-amd64)")
    def test_stock_kernel_clones_differ_without_an_agent(self):
        vm, console, ctl = self.stock_vm, self.stock_console, self.stock_ctl
        self.assertIsNone(vm.poll(), "the stock kernel's VM (started by setUpClass) exited")
        wait_for(lambda: samples(console), 600, "the stock kernel's first sample")
        with open(console, errors="replace") as f:
            self.assertIn("vmgenid=1", f.read(), "the kernel's vmgenid driver found the device")
        wait_for(lambda: samples(console)[-1][0] >= MIN_UPTIME, 2 * MIN_UPTIME,
                 "guest uptime %d s" % MIN_UPTIME)
        snap = self.path("stock-snap")
        self.run_wisp("snapshot", "create", "--control-socket", ctl, snap)
        vm.kill()
        vm.wait()
        at_snapshot = samples(console)[-1]
        self.assertEqual(at_snapshot[2], 0, "no restore yet, no reseed for one")
        firsts = []
        for i in range(2):
            clone_console = self.path("stock-clone%d.console" % i)
            clone = self.popen("snapshot", "restore", snap, "--console", clone_console)
            # The first line of an iteration that began after the restore: the clone's first
            # line may finish an iteration the snapshot caught midway, its uptime read before
            # the pause and its bytes after the restore but before the kernel handled the
            # generation id's notification (seen once: two clones' first lines alike, fork=0).
            fresh = lambda: [s for s in samples(clone_console)[1:] if s[0] > at_snapshot[0] + 1]
            wait_for(fresh, 120, "clone %d's first sample" % i)
            clone.kill()
            clone.wait()
            firsts.append(fresh()[0])
        self.assertNotEqual(firsts[0][1], firsts[1][1],
                            "two clones read the same /dev/urandom bytes: %s" % (firsts,))
        for s in firsts:
            self.assertEqual(s[2], 1, "the clone's kernel reseeded on the generation id change")

    @unittest.skipUnless(os.path.exists(PY_ROOTFS), "no " + PY_ROOTFS + " (make all builds it)")
    def test_agent_clones_differ_in_their_first_call(self):
        self.run_wisp("template", "create", "late", "--rootfs", PY_ROOTFS, "--handler",
                      'python3 -c "%s"' % AGENT_HANDLER, "--warmup", "6", timeout=1200)
        firsts = []
        for _ in range(2):
            out, timings = self.run_wisp_timed("invoke", "late", "--timings")
            # Its first call ran in the sandbox the snapshot held (agent/spare_sandbox.h), set
            # up before the snapshot: the bytes below must still differ between clones.
            self.assertTrue(timings.get("preforked"), timings)
            # KVM's counters of the clone's vCPUs (vmm/kvm/vcpu_stats.h): a clone that ran a
            # handler took exits, among them a nested page fault (EPT/NPT) for each guest page
            # it touched first.
            self.assertGreater(timings.get("exits", -1), 0, timings)
            self.assertGreater(timings.get("nested_page_faults", -1), 0, timings)
            self.assertGreaterEqual(timings["exits"], timings["nested_page_faults"], timings)
            firsts.append(out.split())
        for out in firsts:
            self.assertEqual(len(out), 3, firsts)
            self.assertGreaterEqual(int(out[2]), MIN_UPTIME, "snapshotted late enough")
        self.assertNotEqual(firsts[0][0], firsts[1][0], "same getrandom() bytes: %s" % firsts)
        self.assertNotEqual(firsts[0][1], firsts[1][1], "same /dev/urandom bytes: %s" % firsts)

    @unittest.skipUnless(os.path.exists(PY_ROOTFS), "no " + PY_ROOTFS + " (make all builds it)")
    def test_python_worker_clones_differ(self):
        self.run_wisp("template", "create", "pyrand", "--rootfs", PY_ROOTFS, "--mode", "worker",
                      "--handler", 'python3 -c "%s"' % WORKER, "--warmup", "1", timeout=900)
        values = [self.run_wisp("invoke", "pyrand").strip() for _ in range(2)]
        self.assertNotEqual(values[0], values[1], "two clones' random.random() agree")


if __name__ == "__main__":
    unittest.main(verbosity=2)
