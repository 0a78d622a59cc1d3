#!/usr/bin/env python3
"""containerd-shim-wisp-v2: the container's own root filesystem and snapshot starts (issue 16,
items 2 and 3), under Debian's real containerd and a real `wisp serve` (guests boot: run it
inside KVM, tests/integration/in-kvm).

The containerd, its image import and its clean-up are shim_containerd_test.py's fixture, with
no fixed template (no WISP_SHIM_TEMPLATE): the shim makes a read-only ext4 image of the
container's rootfs (the native snapshotter's directory) in WISP_SHIM_ROOTFS_CACHE, a template
of image + command through serve, and runs every container in a clone of it. The image here
is the fixture's busybox image with a file only it has (/wisp-image-marker), so output of that
file proves the process ran in the image's root, not the guest's.

What "from the snapshot" is asserted by: the shim's log line per task says whether the
template was made or reused, and serve lists exactly one container template after two starts.

    flock /work/wt/testbed.lock tests/integration/in-kvm python3 \\
        tests/integration/shim_rootfs_test.py
"""
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shim_containerd_test as fixture_module  # noqa: E402  (a module: its tests stay its own)
from vmrun import wait_for  # noqa: E402  (perf/, on the path the fixture set)

from shim_containerd_test import IMAGE as MARKED  # noqa: E402  (with image_files below)
MARKER = b"only in the image\n"
# Same command for both starts: the second must find the first's template. It also shows
# whether a write of an earlier container leaked into the image (it must not).
SCRIPT = ("test -e /tmp/written && echo leaked; /bin/busybox cat /wisp-image-marker; "
          "echo written > /tmp/written; /bin/busybox cat /tmp/written; pwd")


class ShimRootfsTest(unittest.TestCase):
    # shim_containerd_test.py's class-level fixture (a containerd of its own), not its tests.
    fixture = fixture_module.ShimContainerdTest.__dict__
    log_tail = fixture["log_tail"]
    ctr = fixture["ctr"]
    start_containerd = fixture["start_containerd"]
    stop_containerd = fixture["stop_containerd"]
    image_files = {"/wisp-image-marker": MARKER}  # the fixture's image has this file too

    @classmethod
    def setUpClass(cls):
        cls.cache = tempfile.mkdtemp(prefix="wisp-rootfs-cache-")
        # No fixed template: each container's own root, in the cache serve may read.
        cls.shim_env = {"WISP_SHIM_ROOTFS_CACHE": cls.cache}
        cls.fixture["setUpClass"].__func__(cls)
        cls.env = dict(os.environ, WISP_HOME=os.path.join(cls.tmp, "home"))
        cls.serve_log = open(os.path.join(cls.tmp, "serve.log"), "w+")
        cls.serve = subprocess.Popen(
            [cls.wisp, "serve", "--socket", cls.serve_sock, "--max-vms", "4",
             "--max-memory", "2048", "--allow-dir", cls.cache],
            env=cls.env, stdout=cls.serve_log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(cls.serve_sock), 30, "serve's socket")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.fixture["tearDownClass"].__func__(cls)
        finally:
            if getattr(cls, "serve_log", None):
                cls.serve_log.close()
            shutil.rmtree(cls.cache, ignore_errors=True)

    def run_container(self, name, *command, flags=()):
        t0 = time.monotonic()
        p = self.ctr("run", "--rm", "--snapshotter", "native", "--runtime",
                     "io.containerd.wisp.v2", *flags, MARKED, name, *command, check=False,
                     timeout=1200)
        took = time.monotonic() - t0
        print(f"ctr run {name} through the shim: {took:.1f} s", file=sys.stderr)
        self.serve_log.seek(0)
        detail = (f"{p.stderr}\n--- serve ---\n{self.serve_log.read()[-3000:]}\n"
                  f"--- containerd ---\n{self.log_tail()}")
        return p, detail

    def template_line(self, task):
        with open(self.log_path) as f:
            m = re.search(rf"task {task}: template (ctr-[0-9a-f]+) (made|reused)", f.read())
        self.assertIsNotNone(m, f"no template line for {task}: {self.log_tail()}")
        return m.group(1), m.group(2)

    def container_templates(self):
        r = subprocess.run([self.wisp, "template", "ls"],  # serve's store (WISP_HOME)
                           env=self.env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return sorted(set(re.findall(r"ctr-[0-9a-f]+", r.stdout)))

    def test_1_first_start_runs_in_the_image_root(self):
        p, detail = self.run_container("rootfs-1", "/bin/sh", "-c", SCRIPT)
        self.assertEqual(p.returncode, 0, detail)
        self.assertEqual(p.stdout, MARKER.decode() + "written\n/\n", detail)
        name, how = self.template_line("rootfs-1")
        self.assertEqual(how, "made")
        self.assertEqual(self.container_templates(), [name])
        # The write landed in the VM's writable layer: the cached image has no /tmp/written.
        images = [f for f in os.listdir(self.cache) if f.endswith(".ext4")]
        self.assertEqual(len(images), 1, os.listdir(self.cache))
        ls = subprocess.run(["debugfs", "-R", "ls -l /tmp", os.path.join(self.cache, images[0])],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(ls.returncode, 0, ls.stderr)
        self.assertNotIn("written", ls.stdout)
        cat = subprocess.run(["debugfs", "-R", "cat /wisp-image-marker",
                              os.path.join(self.cache, images[0])],
                             capture_output=True, timeout=60)
        self.assertEqual(cat.stdout, MARKER)

    def test_2_a_later_start_is_a_clone_of_the_template(self):
        p, detail = self.run_container("rootfs-2", "/bin/sh", "-c", SCRIPT)
        self.assertEqual(p.returncode, 0, detail)
        # No "leaked": the first container's write stayed in its own VM.
        self.assertEqual(p.stdout, MARKER.decode() + "written\n/\n", detail)
        first, _ = self.template_line("rootfs-1")
        name, how = self.template_line("rootfs-2")
        self.assertEqual((name, how), (first, "reused"))
        self.assertEqual(self.container_templates(), [first])

    def test_3_another_command_gets_its_own_template_with_the_spec_cwd_and_limit(self):
        # ctr 1.6 has no --user: the OCI default user (root, capabilities dropped) is checked.
        p, detail = self.run_container(
            "rootfs-3", "/bin/sh", "-c", "/bin/busybox id -u; pwd; /bin/busybox touch ok && echo wrote",
            flags=("--cwd", "/tmp", "--memory-limit", str(128 << 20)))
        self.assertEqual(p.returncode, 0, detail)
        self.assertEqual(p.stdout.splitlines(), ["0", "/tmp", "wrote"], detail)
        name, how = self.template_line("rootfs-3")
        self.assertEqual(how, "made")
        self.assertEqual(len(self.container_templates()), 2)

    def exec_in(self, task, exec_id, *command):
        p = self.ctr("tasks", "exec", "--exec-id", exec_id, task, *command, check=False,
                     timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr + self.log_tail())
        return p.stdout

    def test_5_a_checkpointed_task_starts_again_from_its_checkpoint(self):
        # The process keeps a counter in its writable layer (/tmp, guest RAM; replaced by rename,
        # so a snapshot never holds it half written), and logs each start with the count it
        # found: a start from the checkpoint finds the checkpoint's.
        counter = ("test -e /tmp/count && read n < /tmp/count || n=0; "
                   "echo start-$n >> /tmp/starts; "
                   "while :; do n=$((n+1)); echo $n > /tmp/count.new; "
                   "/bin/busybox mv /tmp/count.new /tmp/count; /bin/busybox sleep 0.2; done")
        p = self.ctr("run", "-d", "--snapshotter", "native", "--runtime",
                     "io.containerd.wisp.v2", MARKED, "ckpt-1", "/bin/sh", "-c", counter,
                     check=False, timeout=1200)
        self.assertEqual(p.returncode, 0, p.stderr + self.log_tail())

        def count(task, exec_id):
            # Before the loop's first rename there is no /tmp/count yet (the task may still be
            # starting on a slow testbed): that reads as 0, not as a failed exec.
            out = self.exec_in(task, exec_id, "/bin/sh", "-c",
                               "/bin/busybox cat /tmp/count 2>/dev/null || echo 0").strip()
            return int(out) if out.isdigit() else 0
        wait_for(lambda: count("ckpt-1", f"c{time.monotonic_ns()}") >= 3, 120,
                 "the counter to count")
        before = count("ckpt-1", "c-before")
        # `ctr task checkpoint`: containerd pauses the task, asks the shim to checkpoint it into
        # a directory, and stores that directory as the checkpoint layer of an image of its own.
        t0 = time.monotonic()
        p = self.ctr("tasks", "checkpoint", "ckpt-1", check=False, timeout=600)
        print(f"ctr task checkpoint: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        self.assertEqual(p.returncode, 0, p.stderr + self.log_tail())
        image = p.stdout.strip()
        self.assertTrue(image.startswith("containerd.io/checkpoint/ckpt-1:"), p.stdout)
        after = count("ckpt-1", "c-after")
        with open(self.log_path) as f:
            snapshots = re.findall(r"task ckpt-1: checkpoint (ckpt-[0-9a-f]+) \((\d+) ms\)",
                                   f.read())
        self.assertEqual(len(snapshots), 1, self.log_tail())
        print(f"checkpoint (serve's snapshot, as the shim timed it): {snapshots}", file=sys.stderr)
        name = snapshots[0][0]
        # What containerd stored: its checkpoint layer holds the shim's record of the snapshot.
        listed = self.ctr("images", "ls").stdout
        digest = re.search(rf"{re.escape(image)}\s+\S+\s+(sha256:[0-9a-f]+)", listed)
        self.assertIsNotNone(digest, listed)
        index = json.loads(self.ctr("content", "get", digest.group(1)).stdout)
        layers = [m["digest"] for m in index["manifests"] if m["mediaType"] ==
                  "application/vnd.containerd.container.criu.checkpoint.criu.tar"]
        self.assertEqual(len(layers), 1, index)
        layer = subprocess.run(["ctr", "--address", self.sock, "content", "get", layers[0]],
                               capture_output=True, timeout=120, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(layer)) as t:
            member = [m for m in t.getmembers() if os.path.basename(m.name) == "wisp-checkpoint"]
            self.assertEqual(len(member), 1, t.getnames())
            record = t.extractfile(member[0]).read().decode()
        self.assertEqual(record, f"wisp-checkpoint 1\ntemplate {name}\ntask ckpt-1\n")
        # The snapshot is a wisp template in serve's store.
        r = subprocess.run([self.wisp, "template", "ls"], env=self.env, capture_output=True,
                           text=True, timeout=120)
        self.assertIn(name, r.stdout)
        # The original task goes; the checkpoint is what is left of it.
        self.ctr("tasks", "kill", "-s", "SIGKILL", "ckpt-1")
        wait_for(lambda: self.ctr("tasks", "delete", "ckpt-1", check=False).returncode == 0, 60,
                 "the original task to end")
        self.ctr("containers", "rm", "ckpt-1")
        # ctr 1.6 cannot hand that image to a Create (`run` has no --checkpoint; `containers
        # restore` wants annotations only `containers checkpoint` writes, and that command's
        # --task leaves its index empty here): the record's template goes in an annotation.
        t0 = time.monotonic()
        p = self.ctr("run", "-d", "--snapshotter", "native", "--runtime",
                     "io.containerd.wisp.v2", "--annotation", f"io.wisp.checkpoint={name}",
                     MARKED, "ckpt-2", "/bin/sh", "-c", counter, check=False, timeout=600)
        print(f"ctr run from the checkpoint: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        self.assertEqual(p.returncode, 0, p.stderr + self.log_tail())
        with open(self.log_path) as f:
            log = f.read()
        self.assertIn(f"task ckpt-2: from checkpoint {name}", log)
        wait_for(lambda: len(self.exec_in("ckpt-2", f"s{time.monotonic_ns()}", "/bin/busybox",
                                          "cat", "/tmp/starts").split()) == 2, 120,
                 "the restored process to start")
        starts = self.exec_in("ckpt-2", "s-final", "/bin/busybox", "cat", "/tmp/starts").split()
        # The first start's line and a second start that found the count of the checkpoint
        # (taken between `before` and `after`), not a fresh 0.
        self.assertEqual(starts[0], "start-0")
        found = int(starts[1].split("-")[1])
        print(f"count before the checkpoint {before}, after it {after}; the restored start "
              f"found {found}", file=sys.stderr)
        self.assertGreaterEqual(found, before, (before, starts, after))
        restored = count("ckpt-2", "c-restored")
        wait_for(lambda: count("ckpt-2", f"c{time.monotonic_ns()}") > restored, 60,
                 "the restored counter to go on")
        self.ctr("tasks", "kill", "-s", "SIGKILL", "ckpt-2")
        wait_for(lambda: self.ctr("tasks", "delete", "ckpt-2", check=False).returncode == 0, 60,
                 "the restored task to end")
        self.ctr("containers", "rm", "ckpt-2")

    def test_6_ten_containers_of_one_image_the_later_nine_from_the_snapshot(self):
        command = ("/bin/sh", "-c", "echo ten-$((6*7)) from $0; exit 4")
        t_all = time.monotonic()
        times = []
        for i in range(10):
            t0 = time.monotonic()
            p, detail = self.run_container(f"ten-{i}", *command)
            times.append(time.monotonic() - t0)
            self.assertEqual((p.returncode, p.stdout), (4, "ten-42 from /bin/sh\n"), detail)
        took = time.monotonic() - t_all
        print(f"ten containers: {took:.1f} s; each: {' '.join(f'{t:.1f}' for t in times)}",
              file=sys.stderr)
        first, how = self.template_line("ten-0")
        self.assertEqual(how, "made")
        for i in range(1, 10):
            self.assertEqual(self.template_line(f"ten-{i}"), (first, "reused"))
        self.assertIn(first, self.container_templates())
        # Every later start is a clone of the snapshot, so none takes the first one's boot.
        self.assertLess(max(times[1:]), times[0], times)

    def test_4_a_bundle_without_rootfs_mounts_gets_a_clear_error(self):
        rootfs = os.path.join(self.tmp, "plain-rootfs")
        os.makedirs(os.path.join(rootfs, "bin"), exist_ok=True)
        p = self.ctr("run", "--rm", "--rootfs", "--runtime", "io.containerd.wisp.v2", rootfs,
                     "rootfs-4", "/bin/true", check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("rootfs: no mounts", p.stderr)
        self.assertIn("invalid argument", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
