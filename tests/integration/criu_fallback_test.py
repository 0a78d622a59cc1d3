#!/usr/bin/env python3
"""A worker template whose VM snapshot does not fit this host falls back to its CRIU image
(issue 17 items 3 and 4): a Python worker with a slow initialisation (it sleeps, then keeps a
counter and answers "COUNT INIT_STAMP") is made into a template with --mode worker; its VM
snapshot is then made unusable for real (1: its memory file removed; 2: its state file's format
major set to an older one). Each time `wisp invoke` says the snapshot does not fit, boots the
guest cold, restores the worker from the CRIU image (--timings shows the CRIU stages) and
answers with the counter continuing from the warm-up and the same init stamp (the init did not
run again); the snapshot re-made in the background then serves the next call warm. The
worker is restored from the image's read-only drive (criu-image.ext4, made at template
creation; --timings says criu_source "drive"): when the drive is removed (3) or damaged in its
first 4 KiB (4) the fallback makes it again from the archive first, saying so, and still
answers; with WISP_CRIU_NO_DRIVE=1 (5) the archive is sent to the agent instead (the path an
older template's agent takes). Last, without a CRIU image the unusable snapshot is the
restore's own error, and `wisp template rebuild` refuses the template naming the missing
image.
Run inside KVM (tests/integration/in-kvm). Uses build/bin/wisp and build/guest/python-rootfs.ext4.
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
from vmrun import stage_wisp  # noqa: E402

BUILD = os.path.join(ROOT, "build")
PY_ROOTFS = os.path.join(BUILD, "guest/python-rootfs.ext4")
INIT_S = 3  # the worker's slow initialisation
WORKER = ("import sys,time;sys.path.insert(0,'/usr/lib/wisp');import python_worker as w;"
          "time.sleep(%d);s='%%.6f'%%time.time();n=[];"
          "w.serve(lambda p:(n.append(1),'%%d %%s'%%(len(n),s))[1])" % INIT_S)
NAME = "fb"


def timings(stderr):
    for line in stderr.splitlines():
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    return {}


@unittest.skipUnless(os.path.exists(PY_ROOTFS), "no " + PY_ROOTFS + " (make rootfs)")
class CriuFallbackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wisp-criu-fb-")
        cls.wisp = stage_wisp(BUILD, cls.tmp)
        cls.home = os.path.join(cls.tmp, "home")
        cls.env = dict(os.environ, WISP_HOME=cls.home)
        p = cls.run_wisp("template", "create", NAME, "--rootfs", PY_ROOTFS, "--mode", "worker",
                         "--mem", "256", "--handler", 'python3 -c "%s"' % WORKER)
        if not re.search(r"^wisp template create: CRIU image: [0-9.]+ MiB", p.stderr, re.M):
            raise AssertionError("the template has no CRIU image:\n" + p.stderr[-3000:])
        if not re.search(r"^wisp template create: CRIU image drive: [0-9.]+ MiB ext4", p.stderr,
                         re.M):
            raise AssertionError("the template has no CRIU image drive:\n" + p.stderr[-3000:])
        # The snapshot's first call: the warm-up made it 1.
        out = cls.run_wisp("invoke", NAME).stdout.split()
        assert out[0] == "2", out
        cls.stamp = out[1]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def run_wisp(cls, *args, check=True, timeout=300):
        p = subprocess.run([cls.wisp, *args], capture_output=True, text=True, timeout=timeout,
                           env=cls.env, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError("wisp %s exited %d:\n%s" % (" ".join(args), p.returncode,
                                                               p.stderr[-3000:]))
        return p

    def snapshot_dir(self):
        return os.path.join(self.home, "templates", NAME, "snapshot")

    def generation(self):
        return os.readlink(os.path.join(self.home, "templates", NAME))

    def wait_for_rebuild(self, old_generation):
        """The background `wisp template rebuild` has swapped in a new generation."""
        log = os.path.join(self.home, "templates", "." + NAME + ".rebuild.log")
        deadline = time.monotonic() + 120
        text = ""
        while time.monotonic() < deadline:
            with open(log) as f:
                text = f.read()
            if self.generation() != old_generation and "rebuilt in" in text:
                # Its progress: the cold boot and the worker restored from the image.
                self.assertIn("restoring its worker from the CRIU image", text)
                self.assertIn("worker restored: boot", text)
                # The new snapshot records its own working set (a probe clone's first call).
                self.assertIn("working set: ", text)
                self.assertTrue(os.path.exists(os.path.join(self.snapshot_dir(), "working-set")))
                return
            time.sleep(0.5)
        self.fail("no rebuilt snapshot after 120 s; its log:\n" + text[-3000:])

    def fall_back(self, reason, source="drive", remade=None, env=None):
        gen = self.generation()
        p = subprocess.run([self.wisp, "invoke", NAME, "--timings"], capture_output=True,
                           text=True, timeout=300, env=dict(self.env, **(env or {})),
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        print(p.stderr, file=sys.stderr)
        self.assertIn("snapshot does not fit this host (", p.stderr)
        self.assertIn(reason, p.stderr)
        self.assertIn("falling back to the CRIU image", p.stderr)
        # The counter continues from the warm-up, and the init (its stamp) did not run again.
        self.assertEqual(p.stdout.split(), ["2", self.stamp])
        t = timings(p.stderr)
        self.assertTrue(t.get("criu_fallback"), p.stderr)
        for stage in ("boot_ms", "criu_restore_ms", "criu_guest_ms", "invoke_ms"):
            self.assertGreater(t.get(stage, 0), 0, stage)
        # Where the image came from: the drive (mounted in the guest, nothing sent) or the
        # upload (sent and unpacked, no mount).
        self.assertEqual(t.get("criu_source"), source, p.stderr)
        if source == "drive":
            self.assertIn("worker restored from the CRIU image on its read-only drive", p.stderr)
            self.assertGreater(t.get("criu_mount_ms", 0), 0)
            self.assertEqual(t.get("criu_upload_ms"), 0)
            self.assertEqual(t.get("criu_unpack_ms"), 0)
        else:
            self.assertIn("worker restored from the CRIU image sent to the agent", p.stderr)
            self.assertGreater(t.get("criu_upload_ms", 0), 0)
            self.assertEqual(t.get("criu_mount_ms"), 0)
        if remade:
            self.assertRegex(p.stderr, r"CRIU image drive /\S*/criu-image\.ext4: " + remade +
                             r".*: making it again from the archive")
            self.assertGreater(t.get("criu_drive_ms", 0), 0)
        else:
            self.assertNotIn("making it again", p.stderr)
            self.assertEqual(t.get("criu_drive_ms"), 0)
        self.assertIn("re-making the VM snapshot for this host in the background", p.stderr)
        self.wait_for_rebuild(gen)
        # The next call: warm from the re-made snapshot (the CRIU image's state: count 1).
        w = self.run_wisp("invoke", NAME, "--timings")
        self.assertNotIn("does not fit", w.stderr)
        self.assertNotIn("criu_fallback", w.stderr)
        self.assertEqual(w.stdout.split(), ["2", self.stamp])
        self.assertTrue(os.path.exists(os.path.join(self.snapshot_dir(), "criu-image.wci")))
        # The rebuild kept the drive (linked, the image is the same): intact, checked in full.
        self.assertTrue(os.path.exists(os.path.join(self.snapshot_dir(), "criu-image.ext4")))
        v = self.run_wisp("snapshot", "verify", self.snapshot_dir())
        self.assertIn("criu image drive: ", v.stdout + v.stderr)
        return t

    def test_1_memory_file_removed(self):
        os.unlink(os.path.join(self.snapshot_dir(), "memory"))
        self.fall_back("memory: missing")

    def test_2_state_file_from_an_older_format(self):
        with open(os.path.join(self.snapshot_dir(), "state"), "r+b") as f:
            f.seek(8)
            f.write(b"\x01\x00")  # format major 1
        self.fall_back("was written by an older wisp")

    def test_3_drive_removed_is_made_again(self):
        snap = self.snapshot_dir()
        os.unlink(os.path.join(snap, "criu-image.ext4"))
        os.unlink(os.path.join(snap, "memory"))
        self.fall_back("memory: missing", remade="missing")

    def test_4_drive_damaged_in_its_first_4k_is_made_again(self):
        snap = self.snapshot_dir()
        drive = os.path.join(snap, "criu-image.ext4")
        st = os.stat(drive)
        with open(drive, "r+b") as f:  # a byte of the superblock, the file's time kept
            f.seek(1024 + 40)
            b = f.read(1)
            f.seek(1024 + 40)
            f.write(bytes([b[0] ^ 0x5a]))
        os.utime(drive, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.unlink(os.path.join(snap, "memory"))
        t = self.fall_back("memory: missing", remade="not the drive its record describes")
        self.assertGreater(t["criu_drive_ms"], 0)

    def test_5_without_the_drive_the_image_is_sent(self):
        os.unlink(os.path.join(self.snapshot_dir(), "memory"))
        self.fall_back("memory: missing", source="upload", env={"WISP_CRIU_NO_DRIVE": "1"})

    def test_6_without_a_criu_image_the_restores_own_error(self):
        snap = self.snapshot_dir()
        for f in ("criu-image.wci", "criu-image.sum", "memory"):
            os.unlink(os.path.join(snap, f))
        p = self.run_wisp("invoke", NAME, check=False)
        self.assertEqual(p.returncode, 126, p.stderr)
        self.assertIn("memory", p.stderr)
        self.assertNotIn("falling back", p.stderr)
        r = self.run_wisp("template", "rebuild", NAME, check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no CRIU image", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
