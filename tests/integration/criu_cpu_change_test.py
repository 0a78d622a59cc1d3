#!/usr/bin/env python3
"""A worker template made on one CPU model is served on another through its CRIU image (issue
17): the host CPU really changes between the template's creation and its use. Two nested-KVM
testbeds share one WISP_HOME: the first (QEMU's "max" CPU) makes the counter worker's template
and calls it once; the second runs on another CPU model (WISP_TESTBED_CPU, default
"EPYC,+svm", whose CPUID differs), where the VMM refuses the VM snapshot as from another CPU,
`wisp invoke` falls back to the CRIU image and answers with the counter continuing from the
warm-up and the first init's stamp; `wisp template rebuild` then re-makes the snapshot on this
CPU, and the next call is warm from it.

Runs on the host, not inside in-kvm: it starts the testbeds itself. On a host with hardware
KVM the CPU cannot be changed between two runs, so it skips there (the fallback's other causes
are tested by criu_fallback_test.py on any host).
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
WISP = os.path.join(BUILD, "bin/wisp")
PY_ROOTFS = os.path.join(BUILD, "guest/python-rootfs.ext4")
TESTBED = os.path.join(ROOT, "tests/testbed/run")
OTHER_CPU = os.environ.get("WISP_TEST_OTHER_CPU", "EPYC,+svm")
WORKER = ("import sys,time;sys.path.insert(0,'/usr/lib/wisp');import python_worker as w;"
          "time.sleep(2);s='%.6f'%time.time();n=[];"
          "w.serve(lambda p:(n.append(1),'%d %s'%(len(n),s))[1])")
HANDLER = shlex.quote('python3 -c "%s"' % WORKER)  # a shell word for the step scripts
NAME = "cpu"


def hardware_kvm():
    return subprocess.run([os.path.join(ROOT, "tests/testbed/host-has-hw-kvm")]).returncode == 0


def timings(stderr):
    for line in stderr.splitlines():
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    return {}


@unittest.skipIf(hardware_kvm(), "hardware KVM: this host's CPU model cannot change between runs")
@unittest.skipUnless(os.path.exists(PY_ROOTFS), "no " + PY_ROOTFS + " (make rootfs)")
class CriuCpuChangeTest(unittest.TestCase):
    def setUp(self):
        # Under build/: the checkout is what both testbeds share (their /tmp is their own).
        self.tmp = tempfile.mkdtemp(prefix="cpu-change-", dir=BUILD)
        self.home = os.path.join(self.tmp, "home")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def in_testbed(self, script, cpu=None):
        """Runs the shell `script` in a fresh testbed (on `cpu`); returns its output."""
        env = dict(os.environ, WISP_HOME=self.home, WISP_NO_SNAPSHOT_REMAKE="1")
        if cpu:
            env["WISP_TESTBED_CPU"] = cpu
        path = os.path.join(self.tmp, "step.sh")
        with open(path, "w") as f:
            f.write("set -eu\n" + script)
        p = subprocess.run([TESTBED, "--quiet", "--", "sh", path], capture_output=True, text=True,
                           env=env, timeout=900)
        print(p.stderr[-4000:], file=sys.stderr)
        self.assertEqual(p.returncode, 0, "testbed step failed:\n" + p.stderr[-4000:])
        return p

    def test_template_made_on_one_cpu_is_served_on_another(self):
        made = self.in_testbed(
            f"{WISP} template create {NAME} --rootfs {PY_ROOTFS} --mode worker --mem 256 "
            f"--handler {HANDLER}\n"
            f"{WISP} invoke {NAME}\n")
        self.assertRegex(made.stderr, r"wisp template create: CRIU image: [0-9.]+ MiB")
        count, stamp = made.stdout.split()
        self.assertEqual(count, "2")  # the warm-up made it 1

        # Another CPU: each command's stderr goes to a file of its own, so they can be told apart.
        out = os.path.join(self.tmp, "out")
        os.mkdir(out)
        self.in_testbed(
            f"{WISP} invoke {NAME} --timings >{out}/fallback.out 2>{out}/fallback.err\n"
            f"{WISP} template rebuild {NAME} --timings 2>{out}/rebuild.err\n"
            f"{WISP} invoke {NAME} --timings >{out}/warm.out 2>{out}/warm.err\n", cpu=OTHER_CPU)

        def read(name):
            with open(os.path.join(out, name)) as f:
                return f.read()

        err = read("fallback.err")
        print("on " + OTHER_CPU + ":\n" + err + read("rebuild.err") + read("warm.err"),
              file=sys.stderr)
        self.assertIn("snapshot does not fit this host (", err)
        self.assertIn("snapshot is from another CPU", err)
        self.assertIn("falling back to the CRIU image", err)
        # The counter continues from the warm-up: the init (its stamp) did not run again.
        self.assertEqual(read("fallback.out").split(), ["2", stamp])
        t = timings(err)
        self.assertTrue(t.get("criu_fallback"), err)
        self.assertGreater(t.get("criu_guest_ms", 0), 0, err)

        self.assertIn("template " + NAME + " rebuilt in", read("rebuild.err"))
        warm = read("warm.err")
        self.assertNotIn("does not fit", warm)
        self.assertFalse(timings(warm).get("criu_fallback"), warm)
        self.assertEqual(read("warm.out").split(), ["2", stamp])


if __name__ == "__main__":
    unittest.main()
