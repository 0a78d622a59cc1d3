#!/usr/bin/env python3
"""virtio-net on a TAP, on a real KVM: a function fetches a file over HTTP and gets it whole.

The test makes a network namespace of its own holding a TAP with an address and a small HTTP
server bound to that address (python3 -m http.server), then, inside that namespace, runs
`wisp exec --net tap=...,ip=...,gw=... --network` (the VMM jailed, as always) whose command
fetches a 1 MiB file with the guest's busybox wget and prints its SHA-256. All traffic stays
inside the namespace. Also: a TAP that does not exist is a clear error before any boot.

Needs root (network namespaces, TAPs). Run by ctest (label integration) inside KVM.
"""
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import stage_wisp, wait_for  # noqa: E402

BUILD = os.path.join(ROOT, "build")
HOST_ADDR, GUEST_ADDR, PORT = "10.77.0.1", "10.77.0.2", 8080
TAP = "wtap0"


def in_ns(ns, *argv):
    """argv run in network namespace `ns`. nsenter, not `ip netns exec`, which also mounts a
    sysfs of the namespace over /sys, hiding the cgroup2 mount the VMM's jail needs."""
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def ns_run(ns, *argv, **kw):
    kw.setdefault("check", True)
    return subprocess.run(in_ns(ns, *argv), **kw)


class NetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("network namespaces and TAPs need root")
        cls.tmp = tempfile.mkdtemp(prefix="wisp-net-")
        cls.wisp = stage_wisp(BUILD, os.path.join(cls.tmp, "wisp"))
        cls.ns = f"wisp-net-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", cls.ns], check=True)
        ns_run(cls.ns, "ip", "link", "set", "lo", "up")
        ns_run(cls.ns, "ip", "tuntap", "add", "dev", TAP, "mode", "tap")
        ns_run(cls.ns, "ip", "addr", "add", f"{HOST_ADDR}/24", "dev", TAP)
        ns_run(cls.ns, "ip", "link", "set", TAP, "up")
        cls.www = os.path.join(cls.tmp, "www")
        os.makedirs(cls.www)
        cls.blob = os.urandom(1 << 20)
        with open(os.path.join(cls.www, "blob"), "wb") as f:
            f.write(cls.blob)
        cls.server = subprocess.Popen(
            in_ns(cls.ns, sys.executable, "-m", "http.server", str(PORT), "--bind", HOST_ADDR,
                  "--directory", cls.www),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Listening: the namespace's own /proc/net/tcp shows it (hex port, state 0A).
        wait_for(lambda: f":{PORT:04X} 00000000:0000 0A" in ns_run(
            cls.ns, "cat", "/proc/net/tcp", capture_output=True, text=True).stdout,
            60, "the HTTP server to listen")

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.server.wait()
        subprocess.run(["ip", "netns", "del", cls.ns], check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_function_fetches_a_file_whole(self):
        want = hashlib.sha256(self.blob).hexdigest()
        cmd = (f"wget -q -O /tmp/blob http://{HOST_ADDR}:{PORT}/blob && "
               "wc -c < /tmp/blob && sha256sum /tmp/blob")
        t0 = time.monotonic()
        r = ns_run(self.ns, self.wisp, "exec", "--mem", "256",
                   "--net", f"tap={TAP},ip={GUEST_ADDR}/24,gw={HOST_ADDR}", "--network",
                   "--", "/bin/sh", "-c", cmd,
                   capture_output=True, text=True, timeout=180, check=False)
        took = time.monotonic() - t0
        print(f"net_test: exec with a 1 MiB fetch took {took:.1f} s", file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = r.stdout.split()
        self.assertEqual(lines[0], str(len(self.blob)), r.stdout)
        self.assertEqual(lines[1], want, r.stdout)

    def test_missing_tap_is_a_clear_error(self):
        r = ns_run(self.ns, self.wisp, "exec", "--net", "tap=wisp-nosuch0", "--", "/bin/true",
                   capture_output=True, text=True, timeout=120, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("TAP wisp-nosuch0: no such network interface", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
