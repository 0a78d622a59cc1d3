#!/usr/bin/env python3
"""virtio-vsock in a real guest, through wisp's Unix-socket bridge: 64 MiB each way intact
(SHA-256), 32 concurrent connections, the host closing mid-stream, the guest closing
mid-stream, a port nobody listens on. One VM serves all cases (guest/tools/actions/vsocktest).
Run by ctest (label integration) inside KVM; uses build/guest/test-initramfs.cpio.gz.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WISP = os.path.join(ROOT, "build/bin/wisp")
HOST = [sys.executable, os.path.join(ROOT, "tests/integration/vsock_host.py")]
INITRD = os.path.join(ROOT, "build/guest/test-initramfs.cpio.gz")
MIB64 = 64 << 20


def host(*args, timeout=600):
    p = subprocess.run(HOST + [str(a) for a in args] + ["--timeout", str(timeout)],
                       capture_output=True, text=True, timeout=timeout + 30)
    return p.returncode, [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


class VsockTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="wisp-vsock-")
        cls.uds = os.path.join(cls.dir, "v.sock")
        cls.console = os.path.join(cls.dir, "console.log")
        # The guest dials host port 5000 as soon as its listeners are up: listen first.
        cls.listener = subprocess.Popen(
            HOST + ["listen", cls.uds, "5000", "sink", "--count", "1", "--timeout", "900"],
            stdout=subprocess.PIPE, text=True)
        cls.vm = subprocess.Popen(
            [WISP, "run", "--initrd", INITRD, "--mem", "256", "--vsock-uds", cls.uds,
             "--console", cls.console, "--cmdline", "quiet wisp_action=vsocktest"],
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "listeners up" not in cls.read_console():
            if cls.vm.poll() is not None:
                break
            time.sleep(0.5)
        if "listeners up" not in cls.read_console():
            cls.vm.kill()
            raise RuntimeError("guest listeners did not come up:\n" + cls.read_console()[-3000:])

    @classmethod
    def read_console(cls):
        try:
            with open(cls.console, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def test_1_host_to_guest_64mib_intact(self):
        rc, res = host("connect", self.uds, 52, "send", MIB64)
        self.assertEqual(rc, 0, res)
        self.assertTrue(res[0]["ok"], res)  # the guest's "N sha256" equals what we sent

    def test_2_guest_to_host_64mib_on_host_connection(self):
        rc, res = host("connect", self.uds, 53, "recv")
        self.assertEqual(rc, 0, res)
        self.assertEqual(res[0]["bytes"], MIB64)
        m = re.search(r"source bytes=%d sha256=([0-9a-f]{64})" % MIB64, self.read_console())
        self.assertTrue(m, self.read_console()[-2000:])
        self.assertEqual(res[0]["sha256"], m.group(1))

    def test_3_32_concurrent_connections(self):
        rc, res = host("connect", self.uds, 54, "echo", 262144, "--conns", 32)
        self.assertEqual(rc, 0, res)
        self.assertEqual(sum(1 for r in res if r.get("ok")), 32, res)

    def test_4_host_closes_mid_stream(self):
        host("connect", self.uds, 55, "abort", 4 << 20)
        # The device and the guest listener carry on: a whole transfer on the same port works.
        rc, res = host("connect", self.uds, 55, "send", 1 << 20)
        self.assertEqual(rc, 0, res)
        self.assertTrue(res[0]["ok"], res)

    def test_5_guest_closes_mid_stream(self):
        start = time.monotonic()
        rc, res = host("connect", self.uds, 56, "recv", timeout=120)
        self.assertLess(time.monotonic() - start, 120, "the host side must see the close")
        self.assertTrue(res, "no result")
        self.assertLessEqual(res[0].get("bytes") or 0, 4 << 20)

    def test_6_no_listener_is_refused(self):
        rc, res = host("connect", self.uds, 99, "recv", timeout=30)
        self.assertNotEqual(rc, 0)
        self.assertFalse(res[0]["ok"])

    def test_7_guest_initiated_64mib_and_clean_exit(self):
        out, _ = self.listener.communicate(timeout=900)
        results = [json.loads(l) for l in out.splitlines() if '"conn"' in l]
        self.assertTrue(results and results[0]["ok"] and results[0]["bytes"] == MIB64, out)
        _, err = self.vm.communicate(timeout=300)
        self.assertEqual(self.vm.returncode, 0, err)
        console = self.read_console()
        self.assertIn("send bytes=%d" % MIB64, console)
        self.assertRegex(console, r"send bytes=%d sha256=[0-9a-f]{64} .*match=1" % MIB64)
        self.assertIn("vsocktest: done", console)

    @classmethod
    def tearDownClass(cls):
        for p in (cls.vm, cls.listener):
            if p.poll() is None:
                p.kill()
                p.wait()


if __name__ == "__main__":
    unittest.main(verbosity=2)
