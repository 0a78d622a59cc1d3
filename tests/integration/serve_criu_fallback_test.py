#!/usr/bin/env python3
"""`wisp serve` falls back to a worker template's CRIU image too (issue 17, through serve: what
a FaaS controller uses). A Python worker with a slow initialisation (it sleeps, then keeps a
counter and answers "COUNT INIT_STAMP") is made into a template with --mode worker; serve runs
with one warm clone of it. Its VM snapshot is then made unusable for real (its memory file
removed):

1. the warm clone restored before still answers; its refill fails, serve says the snapshot does
   not fit and stops the template's warm clones; the next call over HTTP is served from the
   CRIU image (Wisp-Timings: criuFallback, bootMs, criuRestoreMs) and continues the counter
   from the warm-up with the same init stamp (the initialisation did not run again); serve
   re-makes the snapshot in the background (its log), after which calls are not fallbacks and
   the warm clone is back; /metrics counts the fallback and observes the "criu" stage.
2. two concurrent fallback calls of one generation share one re-make of its snapshot.
3. a serve without warm clones: a fresh call of a snapshot whose memory file is missing is
   served from the CRIU image, and the pool's standby VMM is not used up on it (serve's check
   before it orders a restore).

Run inside KVM (tests/integration/in-kvm), as root (the jail). Uses build/bin/wisp and
build/guest/python-rootfs.ext4.
"""
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "perf"))
sys.path.insert(0, HERE)
from vmrun import stage_wisp, wait_for  # noqa: E402
from serve_test import Serve, descendants  # noqa: E402

BUILD = os.path.join(ROOT, "build")
PY_ROOTFS = os.path.join(BUILD, "guest/python-rootfs.ext4")
INIT_S = 3  # the worker's slow initialisation
WORKER = ("import sys,time;sys.path.insert(0,'/usr/lib/wisp');import python_worker as w;"
          "time.sleep(%d);s='%%.6f'%%time.time();n=[];"
          "w.serve(lambda p:(n.append(1),'%%d %%s'%%(len(n),s))[1])" % INIT_S)
NAME = "sfb"
REMADE = "serve: template %s: VM snapshot re-made for this host" % NAME
REMAKING = "serve: template %s: re-making its VM snapshot" % NAME
PAUSED = "serve: template %s: no more warm clones" % NAME


@unittest.skipUnless(os.path.exists(PY_ROOTFS), "no " + PY_ROOTFS + " (make rootfs)")
@unittest.skipUnless(shutil.which("curl"), "no curl")
class ServeCriuFallbackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wisp-serve-criu-fb-")
        cls.wisp = stage_wisp(BUILD, cls.tmp)
        cls.home = os.path.join(cls.tmp, "home")
        os.makedirs(cls.home, mode=0o700)
        env = dict(os.environ, WISP_HOME=cls.home)
        env.pop("WISP_SERVER", None)
        p = subprocess.run([cls.wisp, "template", "create", NAME, "--rootfs", PY_ROOTFS,
                            "--mode", "worker", "--mem", "256", "--handler",
                            'python3 -c "%s"' % WORKER], capture_output=True, text=True,
                           timeout=600, env=env, stdin=subprocess.DEVNULL)
        if p.returncode != 0 or not re.search(r"^wisp template create: CRIU image: ", p.stderr,
                                              re.M):
            raise AssertionError("template create (%d), or no CRIU image:\n%s" %
                                 (p.returncode, p.stderr[-3000:]))
        cls.serve = Serve(cls.wisp, os.path.join(cls.tmp, "serve"), cls.home,
                          "--warm", NAME + "=1")
        cls.stamp = None

    @classmethod
    def tearDownClass(cls):
        cls.serve.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def log(self):
        self.serve.log.flush()
        with open(os.path.join(self.serve.root, "serve.log"), errors="replace") as f:
            return f.read()

    def invoke(self):
        """One call over HTTP: (answer words, Wisp-Timings as a dict)."""
        status, headers, body = self.serve.curl("/v1/templates/%s/invoke" % NAME, data=b"x",
                                                timeout=300)
        self.assertEqual(status, 200, "%s\n%s\n%s" % (headers, body, self.log()[-3000:]))
        m = re.search(r"^wisp-timings: *(.*?)\r?$", headers, re.M | re.I)
        self.assertIsNotNone(m, headers)
        return body.decode().split(), json.loads(m.group(1))

    def invoke_cli(self):
        """One call through `wisp invoke --server --timings`: (answer words, its JSON line)."""
        rc, out, err = self.serve.invoke(NAME, b"x", "--timings")
        self.assertEqual(rc, 0, err + self.log()[-3000:])
        lines = [ln for ln in err.splitlines() if ln.startswith("{")]
        self.assertEqual(len(lines), 1, err)
        return out.decode().split(), json.loads(lines[0])

    def metric(self, name, labels):
        _, _, body = self.serve.curl("/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + "{" + labels + "}"):
                return float(line.split()[-1])
        return 0.0

    def generation(self):
        return os.readlink(os.path.join(self.home, "templates", NAME))

    def break_snapshot(self):
        os.unlink(os.path.join(self.home, "templates", NAME, "snapshot", "memory"))

    def wait_for_log(self, text, count=1, timeout=150):
        wait_for(lambda: self.log().count(text) >= count, timeout, repr(text))

    def warm_ready(self):
        return self.metric("wisp_warm_clones_ready", 'template="%s"' % NAME)

    def check_answer(self, words):
        if ServeCriuFallbackTest.stamp is None:
            ServeCriuFallbackTest.stamp = words[1]
        # The counter continues from the warm-up (1), the init stamp is the snapshot's.
        self.assertEqual(words, ["2", ServeCriuFallbackTest.stamp])

    def test_1_fallback_then_warm_again(self):
        wait_for(lambda: self.warm_ready() >= 1, 120, "a warm clone")
        words, t = self.invoke()
        self.check_answer(words)
        self.assertTrue(t.get("warm"), t)
        # Its refill restored from the intact snapshot before the memory file goes.
        wait_for(lambda: self.warm_ready() >= 1, 120, "the warm clone's refill")
        gen = self.generation()
        self.break_snapshot()
        # The warm clone taken, its refill's restore fails: the snapshot does not fit.
        words, t = self.invoke()
        self.check_answer(words)
        self.assertFalse(t.get("criuFallback", False), t)
        self.wait_for_log(PAUSED, 1, 60)
        self.assertIn("memory: missing", self.log())
        t0 = time.monotonic()
        words, t = self.invoke()
        print("fallback call: %.2f s; Wisp-Timings %s" % (time.monotonic() - t0, t),
              file=sys.stderr)
        self.check_answer(words)  # the CRIU image's worker: no re-initialisation
        self.assertTrue(t.get("criuFallback"), t)
        for stage in ("bootMs", "criuRestoreMs", "criuGuestMs", "restoreMs", "invokeMs"):
            self.assertGreater(t.get(stage, 0), 0, stage)
        self.assertGreaterEqual(t["restoreMs"], t["bootMs"] + t["criuRestoreMs"] - 1)
        self.assertEqual(t.get("criuSource"), "drive", t)  # the image's read-only drive
        self.wait_for_log(REMADE, 1)
        self.assertNotEqual(self.generation(), gen)
        self.assertEqual(self.log().count(REMAKING), 1)
        words, t = self.invoke()
        self.check_answer(words)
        self.assertFalse(t.get("criuFallback", False), t)
        self.assertEqual(self.metric("wisp_criu_fallbacks_total", 'template="%s"' % NAME), 1)
        self.assertEqual(self.metric("wisp_stage_duration_seconds_count", 'stage="criu"'), 1)
        # Warm clones of the new generation again.
        wait_for(lambda: self.warm_ready() >= 1, 120, "a warm clone of the re-made snapshot")

    def test_2_concurrent_fallbacks_share_one_remake(self):
        remakes = self.log().count(REMAKING)
        paused = self.log().count(PAUSED)
        wait_for(lambda: self.warm_ready() >= 1, 120, "a warm clone")
        gen = self.generation()
        self.break_snapshot()
        words, _ = self.invoke()  # takes the warm clone; its refill finds the snapshot unfit
        self.check_answer(words)
        self.wait_for_log(PAUSED, paused + 1, 60)
        t0 = time.monotonic()
        # One over HTTP, one through `wisp invoke --server --timings` (its JSON line names the
        # CRIU stages as a standalone fallback's does).
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            over_http = pool.submit(self.invoke)
            over_cli = pool.submit(self.invoke_cli)
            results = [over_http.result(), over_cli.result()]
        print("two concurrent fallback calls: %.2f s" % (time.monotonic() - t0), file=sys.stderr)
        for words, t in results:
            self.check_answer(words)
            self.assertTrue(t.get("criuFallback", t.get("criu_fallback")), t)
        cli = results[1][1]
        self.assertEqual(cli.get("criu_source"), "drive", cli)
        for stage in ("boot_ms", "criu_restore_ms", "criu_guest_ms", "criu_mount_ms"):
            self.assertGreater(cli.get(stage, 0), 0, (stage, cli))
        self.wait_for_log(REMADE, 2)
        self.assertEqual(self.log().count(REMAKING), remakes + 1, self.log()[-3000:])
        self.assertNotEqual(self.generation(), gen)
        words, t = self.invoke()
        self.check_answer(words)
        self.assertFalse(t.get("criuFallback", False), t)
        self.assertEqual(self.metric("wisp_criu_fallbacks_total", 'template="%s"' % NAME), 3)

    def test_3_a_fresh_call_falls_back_too(self):
        # A serve without warm clones: the call is a fresh (pool) one, and a snapshot whose
        # memory file is missing goes to the CRIU image; serve sees it from a stat, without
        # ordering a standby VMM to restore it first.
        wait_for(lambda: self.generation() and os.path.exists(os.path.join(
            self.home, "templates", NAME, "snapshot", "memory")), 150, "an intact snapshot")
        os.environ["WISP_NO_SNAPSHOT_REMAKE"] = "1"
        try:
            pool = Serve(self.wisp, os.path.join(self.tmp, "serve-pool"), self.home, "--pool", "1")
        finally:
            del os.environ["WISP_NO_SNAPSHOT_REMAKE"]
        self.addCleanup(pool.stop)
        # Once it stands by (jailed: its supervisor and the child in the VM's namespaces).
        wait_for(lambda: self.pool_idle(pool) >= 1, 120, "the pool's standby VMM")
        standbys = self.standby_vmms(pool)
        self.assertTrue(standbys)
        self.break_snapshot()
        status, headers, body = pool.curl("/v1/templates/%s/invoke" % NAME, data=b"x",
                                          timeout=300)
        self.assertEqual(status, 200, "%s\n%s\n%s" % (headers, body, pool.log_tail()))
        self.check_answer(body.decode().split())
        m = re.search(r"^wisp-timings: *(.*?)\r?$", headers, re.M | re.I)
        self.assertIsNotNone(m, headers)
        self.assertTrue(json.loads(m.group(1)).get("criuFallback"), m.group(1))
        log = pool.log_tail()
        self.assertIn("snapshot does not fit this host (", log)
        self.assertIn("memory: missing", log)
        # The standby was not ordered to restore the snapshot (it would have been used up and
        # replaced): the same VMM still stands by.
        self.assertEqual(self.standby_vmms(pool), standbys, log[-2000:])
        self.assertNotIn("a standby VMM did not take", log)

    @staticmethod
    def pool_idle(serve):
        _, _, body = serve.curl("/metrics")
        for line in body.decode().splitlines():
            if line.startswith("wisp_pool_idle "):
                return float(line.split()[-1])
        return 0.0

    @staticmethod
    def standby_vmms(serve):
        """Pids of the `wisp-vmm standby` processes serve spawned (its pool's), sorted."""
        out = []
        for pid in descendants(serve.pid):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[0].endswith(b"wisp-vmm") and argv[1] == b"standby":
                out.append(pid)
        return sorted(out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
