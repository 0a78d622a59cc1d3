#!/usr/bin/env python3
"""A worker template keeps a CRIU image of its warm worker (issue 17): `wisp template create
--mode worker` on the Python rootfs checkpoints the worker after the warm-up (by default) and
stores the archive and its checksum in the template's snapshot directory; `wisp snapshot
verify` checks it, and refuses it with a message naming the file once a byte of it is changed.
A guest without criu (the agent initramfs) still makes its worker template, with a warning and
no image.
Run inside KVM (tests/integration/in-kvm). Uses build/bin/wisp, build/guest/python-rootfs.ext4
and the default guest (build/guest/agent-initramfs.cpio.gz).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import stage_wisp  # noqa: E402

BUILD = os.path.join(ROOT, "build")
PY_ROOTFS = os.path.join(BUILD, "guest/python-rootfs.ext4")
WORKER = ("import sys,time;sys.path.insert(0,'/usr/lib/wisp');import python_worker as w;"
          "time.sleep(1);n=[];w.serve(lambda p:(n.append(1),'%d'%len(n))[1])")


@unittest.skipUnless(os.path.exists(PY_ROOTFS), "no " + PY_ROOTFS + " (make rootfs)")
class CriuTemplateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wisp-criu-")
        cls.wisp = stage_wisp(BUILD, cls.tmp)
        cls.env = dict(os.environ, WISP_HOME=os.path.join(cls.tmp, "home"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_wisp(self, *args, check=True, timeout=600):
        p = subprocess.run([self.wisp, *args], capture_output=True, text=True, timeout=timeout,
                           env=self.env, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            self.fail("wisp %s exited %d:\n%s" % (" ".join(args), p.returncode, p.stderr[-3000:]))
        return p

    def test_worker_template_keeps_a_verified_criu_image(self):
        p = self.run_wisp("template", "create", "crpy", "--rootfs", PY_ROOTFS, "--mode", "worker",
                          "--mem", "512", "--handler", 'python3 -c "%s"' % WORKER,
                          "--warmup", "1")
        print(p.stderr, file=sys.stderr)
        self.assertIn("CRIU image:", p.stderr)
        snap = os.path.join(self.env["WISP_HOME"], "templates", "crpy", "snapshot")
        image = os.path.join(snap, "criu-image.wci")
        self.assertTrue(os.path.getsize(image) > 0)
        with open(image, "rb") as f:
            self.assertEqual(f.read(8), b"WISPCRI1")
        v = self.run_wisp("snapshot", "verify", snap)
        self.assertIn("checksum ok", v.stdout)
        # The VM snapshot still answers warm (the dump left the worker running).
        out = subprocess.run([self.wisp, "invoke", "crpy"], capture_output=True, text=True,
                             env=self.env, stdin=subprocess.DEVNULL, timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), "2")
        # One changed byte in the middle: refused, naming the file.
        size = os.path.getsize(image)
        with open(image, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x55]))
        bad = self.run_wisp("snapshot", "verify", snap, check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("criu-image.wci", bad.stderr)
        self.assertIn("checksum mismatch", bad.stderr)


class CriuTemplateWithoutCriuTest(unittest.TestCase):
    def test_failed_dump_still_makes_the_template(self):
        tmp = tempfile.mkdtemp(prefix="wisp-criu-")
        self.addCleanup(shutil.rmtree, tmp, True)
        wisp = stage_wisp(BUILD, tmp)
        env = dict(os.environ, WISP_HOME=os.path.join(tmp, "home"))
        p = subprocess.run([wisp, "template", "create", "shw", "--mode", "worker",
                            "--handler", "/bin/wisp-shell-worker cat", "--warmup", "1"],
                           capture_output=True,
                           text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertIn("warning: no CRIU image", p.stderr)
        snap = os.path.join(env["WISP_HOME"], "templates", "shw", "snapshot")
        self.assertFalse(os.path.exists(os.path.join(snap, "criu-image.wci")))
        self.assertFalse(os.path.exists(os.path.join(snap, "criu-image.sum")))
        out = subprocess.run([wisp, "invoke", "shw", "--payload", "-"], capture_output=True,
                             text=True, env=env, input="hi", timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, "hi")


if __name__ == "__main__":
    unittest.main(verbosity=2)
