#!/usr/bin/env python3
"""The VMM's jail on a real KVM, checked from the host while VMs run.

- A running VM's VMM (the process holding the KVM vCPU fds): every thread has Seccomp 2, no
  capabilities in any set, NoNewPrivs 1 and a uid other than 0; its root lists only the VM's
  files; its mount, pid, ipc, uts and net namespaces are not the caller's; it sits in its own
  cgroup with memory.max, pids.max and cpu.max as wisp documents them. Also for the VMM of
  `wisp exec` and of a restored snapshot.
- Each thread kind (loop, vcpu, control) attempting a forbidden call (openat of /etc/passwd,
  execve, socket(AF_INET), ptrace) gets the VMM killed by seccomp, and wisp names the call.
- A guest that fills its RAM under a memory.max below it is stopped by the cgroup, and wisp
  says so from memory.events.
- A stale wisp cgroup (its VMM gone) is removed by the next start.
- A `wisp invoke` killed with SIGKILL mid-call leaves no VMM process (within 2 s) and, once
  the next invoke has run, no runtime directory; one given SIGTERM cleans up before it exits;
  a VMM whose supervisor is SIGKILLed dies too; stop signals that keep coming while a VM stops
  end it as stopped, not killed by seccomp.
- A booted guest's RAM is on 2 MiB transparent huge pages (AnonHugePages of its mapping in
  the VMM's smaps), jailed; with --no-hugepages on none.
- --no-jail and --no-cgroup (debugging only) warn and do what they say: the only test that
  passes them, since they are what it tests.

Run by ctest (label integration) inside KVM, as root (the jail needs root), with cgroup v2 at
/sys/fs/cgroup (the testbed mounts it).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import guest_ram_smaps, stage_wisp, wait_for  # noqa: E402

BUILD = os.path.join(ROOT, "build")
CGROUP = "/sys/fs/cgroup"
NAMESPACES = ["mnt", "pid", "ipc", "uts", "net"]
CAP_FIELDS = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
# A guest that says it is up, then idles until it is stopped.
IDLE = 'quiet wisp_action=cmd wisp_cmd="echo guest-up; sleep 1000"'



def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def status(pid, tid=None):
    """/proc/PID[/task/TID]/status as a dict of its fields."""
    path = "/proc/%d/task/%d/status" % (pid, tid) if tid else "/proc/%d/status" % pid
    out = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def thread_statuses(pid):
    """(tid, status) of each live thread of `pid`. A thread that ends between the listing and
    the read (a VMM's short-lived helper thread) is skipped: only live threads can act."""
    out = []
    for tid in sorted(int(t) for t in os.listdir("/proc/%d/task" % pid)):
        try:
            out.append((tid, status(pid, tid)))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def children(pid):
    try:
        return [int(c) for c in read("/proc/%d/task/%d/children" % (pid, pid)).split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def descendants(pid):
    out = []
    for c in children(pid):
        out += [c] + descendants(c)
    return out


def alive(pid):
    """True while `pid` runs (a zombie has ended)."""
    try:
        return read("/proc/%d/stat" % pid).rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        # ESRCH: the process was reaped between the open and the read.
        return False


def holds_vcpu_fds(pid):
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("anon_inode:kvm-vcpu"):
                return True
        except OSError:
            pass
    return False


def vmm_of(pid, timeout=120):
    """The process that holds the KVM vCPU fds: the jailed VMM under `pid` (a wisp command),
    or `pid` itself when it runs unjailed."""
    return wait_for(lambda: next((p for p in [pid] + descendants(pid) if holds_vcpu_fds(p)), None),
                    timeout, "a VMM holding vCPU fds under pid %d" % pid)


def thp_policy():
    """The host's THP setting for anonymous memory: always, madvise or never."""
    text = read("/sys/kernel/mm/transparent_hugepage/enabled")
    return re.search(r"\[(\w+)\]", text).group(1)


def files_under(root):
    """Every non-directory below `root`, as paths relative to it (with a leading /)."""
    out = set()
    for d, dirs, files in os.walk(root):
        for f in files:
            out.add(os.path.join(d, f)[len(root):])
    return out


class JailTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("the jail needs root; run inside the testbed or as root")
        cls.tmp = tempfile.mkdtemp(prefix="wisp-jail-")
        cls.wisp = stage_wisp(BUILD, cls.tmp)
        cls.guest = os.path.join(cls.tmp, "guest")
        cls.env = dict(os.environ, WISP_HOME=os.path.join(cls.tmp, "home"))
        cls.env.pop("WISP_TEST_FORBIDDEN_CALL", None)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def vm_dir(self, tag):
        """A private directory for one VM's sockets and console."""
        d = os.path.join(self.tmp, tag)
        os.makedirs(d, mode=0o700, exist_ok=True)
        return d

    def start_idle(self, tag, *extra, env=None):
        d = self.vm_dir(tag)
        console, ctl = os.path.join(d, "console"), os.path.join(d, "control.sock")
        vm = subprocess.Popen([self.wisp, "run", "--mem", "128", "--console", console,
                               "--control-socket", ctl, "--cmdline", IDLE, *extra],
                              stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env or self.env)
        self.addCleanup(self.stop, vm)
        wait_for(lambda: "guest-up" in read(console) if os.path.exists(console) else False,
                 300, "the guest to come up")
        return vm, console, ctl

    def stop(self, vm):
        """Stops a VM started by start_idle (SIGTERM, as a person would); returns its stderr."""
        if vm.poll() is None:
            vm.send_signal(signal.SIGTERM)
        try:
            _, err = vm.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            vm.kill()
            _, err = vm.communicate()
        return err or ""

    def run_wisp(self, *args, timeout=300, env=None):
        return subprocess.run([self.wisp, *args], capture_output=True, text=True,
                              timeout=timeout, env=env or self.env, stdin=subprocess.DEVNULL)

    def assert_confined(self, vmm, expect_files):
        """Every thread of `vmm` confined; its root holding `expect_files` and nothing of the
        host; its namespaces its own. Returns its uid."""
        names = set()
        for tid, st in thread_statuses(vmm):
            names.add(st["Name"])
            self.assertEqual(st["Seccomp"], "2", "thread %s (%s)" % (tid, st["Name"]))
            self.assertEqual(st["NoNewPrivs"], "1", st["Name"])
            for field in CAP_FIELDS:
                self.assertEqual(int(st[field], 16), 0, "%s of %s" % (field, st["Name"]))
            uids = st["Uid"].split()
            self.assertTrue(all(u != "0" for u in uids), "uids %s" % uids)
            self.assertEqual(len(set(uids)), 1, "real, effective, saved, fs uid all the VM's")
        self.assertIn("vcpu0", names)
        root = "/proc/%d/root" % vmm
        self.assertNotEqual(os.stat(root + "/").st_ino, os.stat("/").st_ino)
        seen = files_under(root)
        for f in expect_files:
            self.assertTrue(os.path.lexists(root + f), "the VM's root lacks %s" % f)
        for host_path in ["/etc/passwd", "/bin/sh", "/usr/bin/python3", "/proc/self"]:
            self.assertFalse(os.path.lexists(root + host_path), host_path + " is visible")
        extra = {f for f in seen if not any(f.startswith(e) for e in expect_files)}
        self.assertEqual(extra, set(), "files in the VM's root that are not the VM's")
        for ns in NAMESPACES:
            self.assertNotEqual(os.readlink("/proc/%d/ns/%s" % (vmm, ns)),
                                os.readlink("/proc/self/ns/" + ns), ns + " namespace")
        return int(status(vmm)["Uid"].split()[0])

    def assert_cgroup(self, vmm, uid, memory_max, pids_max, cpu_max="max 100000"):
        line = read("/proc/%d/cgroup" % vmm).strip()
        self.assertEqual(line, "0::/wisp/vm-%d" % uid)
        cg = os.path.join(CGROUP, "wisp", "vm-%d" % uid)
        self.assertEqual(read(cg + "/memory.max").strip(), str(memory_max))
        self.assertEqual(read(cg + "/pids.max").strip(), str(pids_max))
        self.assertEqual(read(cg + "/cpu.max").strip(), cpu_max)
        return cg

    def test_running_vm_is_confined(self):
        vm, console, ctl = self.start_idle("confined", "--vcpus", "2", "--cpu-quota", "50")
        vmm = vmm_of(vm.pid)
        sock_dir = os.path.dirname(ctl)
        uid = self.assert_confined(vmm, [os.path.join(self.guest, "vmlinux"),
                                         os.path.join(self.guest, "initramfs.cpio.gz"),
                                         "/dev/kvm", sock_dir])
        names = {st["Name"] for _, st in thread_statuses(vmm)}
        self.assertEqual(names, {"wisp-vmm", "vcpu0", "vcpu1", "vmm-control"})
        # guest RAM + the VMM's 128 MiB; 2 vCPU threads + 4; 50 % of one CPU.
        cg = self.assert_cgroup(vmm, uid, (128 + 128) << 20, 2 + 4, "50000 100000")
        # The VM still works through its jail: the control socket answers.
        self.assertEqual(self.run_wisp("vm", "ping", "--control-socket", ctl).returncode, 0)
        # Guest RAM on 2 MiB pages by default (its madvise comes before the filters go on).
        self.assertGreater(guest_ram_smaps(vmm, 128)["AnonHugePages"], 0,
                           "guest RAM has no huge page (host THP policy: %s)" % thp_policy())
        self.stop(vm)
        self.assertEqual(vm.returncode, 128 + signal.SIGTERM)
        wait_for(lambda: not os.path.exists(cg), 10, "the VM's cgroup to be removed")

    def test_each_drive_has_room_for_its_io_thread(self):
        # Two drives, a control socket and a vsock bridge: pids.max and RLIMIT_NPROC count a
        # block I/O thread per drive beside the vCPU's (they once did not: the second drive's
        # thread could not start and the VMM died).
        drives = []
        for name in ("a.img", "b.img"):
            path = os.path.join(self.tmp, name)
            with open(path, "wb") as f:
                f.truncate(1 << 20)
            drives += ["--drive", path]
        vm, _, ctl = self.start_idle("drives", *drives, "--vsock-uds",
                                     os.path.join(self.vm_dir("drives"), "v.sock"))
        vmm = vmm_of(vm.pid)
        names = sorted(st["Name"] for _, st in thread_statuses(vmm))
        self.assertEqual(names, ["vcpu0", "vmm-block", "vmm-block", "vmm-control", "wisp-vmm"])
        uid = int(dict(thread_statuses(vmm))[vmm]["Uid"].split()[0])
        self.assert_cgroup(vmm, uid, (128 + 128) << 20, 1 + 2 + 4)
        self.assertEqual(self.run_wisp("vm", "ping", "--control-socket", ctl).returncode, 0)
        self.stop(vm)
        self.assertEqual(vm.returncode, 128 + signal.SIGTERM)

    def test_no_hugepages_keeps_guest_ram_on_4k_pages(self):
        vm, _, _ = self.start_idle("nohuge", "--no-hugepages")
        vmm = vmm_of(vm.pid)
        # The guest ran (its kernel and initramfs are in RAM), all of it on 4 KiB pages, also
        # where the host's THP policy is `always` (the testbed's).
        ram = guest_ram_smaps(vmm, 128)
        self.assertGreater(ram["Rss"], 16 << 10)
        self.assertEqual((ram["AnonHugePages"], ram["ShmemPmdMapped"]), (0, 0))
        self.stop(vm)
        self.assertEqual(vm.returncode, 128 + signal.SIGTERM)

    def test_restored_vm_is_confined(self):
        vm, _, ctl = self.start_idle("to-snapshot")
        snap = os.path.join(self.tmp, "jail-snap")
        p = self.run_wisp("snapshot", "create", "--control-socket", ctl, snap)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.stop(vm)
        d = self.vm_dir("restored")
        clone = subprocess.Popen([self.wisp, "snapshot", "restore", snap, "--console", "none",
                                  "--control-socket", os.path.join(d, "control.sock")],
                                 env=self.env)
        self.addCleanup(self.stop, clone)
        vmm = vmm_of(clone.pid)
        # Running (each thread has entered its filter) once the control socket answers.
        wait_for(lambda: self.run_wisp("vm", "ping", "--control-socket",
                                       os.path.join(d, "control.sock")).returncode == 0,
                 120, "the clone to answer")
        uid = self.assert_confined(vmm, [snap + "/state", snap + "/memory", "/dev/kvm", d])
        self.assert_cgroup(vmm, uid, (128 + 128) << 20, 1 + 4)

    def test_exec_vm_is_confined(self):
        p = subprocess.Popen([self.wisp, "exec", "--", "/bin/sh", "-c", "echo ready; sleep 20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=self.env)
        self.addCleanup(self.stop, p)
        self.assertEqual(p.stdout.readline().strip(), "ready")
        vmm = vmm_of(p.pid)
        threads = thread_statuses(vmm)
        self.assertTrue(threads, "the VMM has no live thread")
        for _, st in threads:
            self.assertEqual((st["Seccomp"], st["NoNewPrivs"], int(st["CapBnd"], 16)),
                             ("2", "1", 0), st["Name"])
        self.assertTrue(read("/proc/%d/cgroup" % vmm).strip().startswith("0::/wisp/vm-"))
        p.stdout.close()

    def test_vmm_dies_with_its_supervisor(self):
        # The supervisor (`wisp run` execs it) SIGKILLed: the jailed VMM, whose uid changed
        # after its parent-death signal was first set, must still die with it.
        vm, _, _ = self.start_idle("orphan")
        vmm = vmm_of(vm.pid)
        self.assertNotEqual(vmm, vm.pid)
        vm.kill()
        vm.wait()
        wait_for(lambda: not alive(vmm), 2, "the VMM to die with its supervisor")

    def test_stop_signals_while_stopping_end_the_vm_cleanly(self):
        # Stop signals that keep coming while the VM stops (a terminal's second Ctrl-C, a
        # signal both to the supervisor and to the VMM, as `pkill` sends): the VMM ends as
        # stopped by the first, not killed by seccomp at its exit (its loop thread once ran the
        # jail's no-op handler for a late one, and has no rt_sigreturn).
        for i in range(3):
            vm, _, _ = self.start_idle("stop-signals-%d" % i)
            vmm = vmm_of(vm.pid)
            for _ in range(40):
                for pid in (vm.pid, vmm):
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                if not alive(vmm):
                    break
                time.sleep(0.003)
            err = self.stop(vm)
            self.assertNotIn("seccomp", err)
            self.assertEqual(vm.returncode, 128 + signal.SIGTERM, err)

    def sleeping_invoke(self, tag):
        """A `wisp invoke` in the middle of a call whose handler sleeps for 60 s, with its own
        TMPDIR (where its runtime directory goes): (process, VMM pids, TMPDIR, env)."""
        run = self.vm_dir(tag)
        env = dict(self.env, TMPDIR=run)
        if "sleepy" not in self.run_wisp("template", "ls").stdout:
            # --warmup 0: a handler that sleeps 60 s cannot be warmed up (nor probed).
            p = self.run_wisp("template", "create", "sleepy", "--handler", "/bin/sleep 60",
                              "--warmup", "0", timeout=600, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(os.listdir(run), [], "template create left its runtime directory")
        inv = subprocess.Popen([self.wisp, "invoke", "sleepy", "-n"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        self.addCleanup(inv.kill)
        vmm_of(inv.pid)
        procs = descendants(inv.pid)
        time.sleep(3)  # well into the call
        self.assertIsNone(inv.poll(), "wisp invoke ended before it was signalled")
        return inv, procs, run, env

    def test_signalled_invoke_cleans_up(self):
        # SIGTERM (likewise SIGINT, SIGHUP): the clone is killed, its runtime directory
        # removed, and wisp invoke exits 128+15.
        inv, procs, run, _ = self.sleeping_invoke("invoke-term")
        inv.send_signal(signal.SIGTERM)
        _, err = inv.communicate(timeout=10)
        self.assertEqual(inv.returncode, 128 + signal.SIGTERM, err)
        self.assertEqual(os.listdir(run), [], "a runtime directory was left behind")
        wait_for(lambda: not any(alive(pid) for pid in procs), 2,
                 "the VMM processes %s to end with wisp invoke" % procs)

    def test_killed_invoke_leaves_no_vmm_and_no_runtime_dir(self):
        # wisp invoke SIGKILLed in the middle of a call: its VMM processes end within 2 s, and
        # its runtime directory is gone once the next invoke has run (a dead owner's directory
        # is swept at the next use).
        inv, procs, run, env = self.sleeping_invoke("invoke-kill")
        inv.kill()
        inv.communicate()
        wait_for(lambda: not any(alive(pid) for pid in procs), 2,
                 "the VMM processes %s to end with wisp invoke" % procs)
        self.assertTrue(os.listdir(run), "the killed invoke's runtime directory")
        p = self.run_wisp("invoke", "sleepy", "-n", "--timeout", "1", env=env, timeout=120)
        self.assertEqual(p.returncode, 124, p.stderr)
        self.assertEqual(os.listdir(run), [], "a runtime directory was left behind")

    def test_forbidden_calls_are_killed_and_named(self):
        for kind in ["loop", "vcpu", "control"]:
            for call in ["openat", "execve", "socket", "ptrace"]:
                with self.subTest(kind=kind, call=call):
                    d = self.vm_dir("forbidden-%s-%s" % (kind, call))
                    env = dict(self.env, WISP_TEST_FORBIDDEN_CALL="%s:%s" % (kind, call))
                    p = self.run_wisp("run", "--console", "none", "--control-socket",
                                      os.path.join(d, "control.sock"), "--cmdline", IDLE,
                                      env=env, timeout=120)
                    self.assertEqual(p.returncode, 5, p.stderr)
                    self.assertIn("VMM killed by seccomp: %s (on its %s thread)" % (call, kind),
                                  p.stderr)

    def test_memory_limit_stops_a_guest_that_fills_its_ram(self):
        fill = 'quiet wisp_action=cmd wisp_cmd="dd if=/dev/zero of=/dev/shm/fill bs=1M count=400"'
        p = self.run_wisp("run", "--mem", "512", "--console", "none", "--jail-memory-max", "96",
                          "--cmdline", fill, timeout=600)
        self.assertEqual(p.returncode, 6, p.stderr)
        self.assertIn("VMM killed by its cgroup's memory limit: memory.max is 96 MiB", p.stderr)
        self.assertRegex(p.stderr, r"oom_kill [1-9]")

    def test_stale_cgroup_is_removed_by_the_next_start(self):
        # A VMM whose supervisor was SIGKILLed leaves its cgroup; so does this fake one, whose
        # uid nobody holds.
        stale = os.path.join(CGROUP, "wisp", "vm-2000065000")
        os.makedirs(os.path.dirname(stale), exist_ok=True)
        if not os.path.isdir(stale):
            os.mkdir(stale)
        vm, _, _ = self.start_idle("after-stale")
        self.assertFalse(os.path.exists(stale), "the stale cgroup is still there")

    def test_no_jail_and_no_cgroup_flags(self):
        # The debugging flags' own test: the only place they are passed.
        vm, _, _ = self.start_idle("unjailed", "--no-jail")
        vmm = vmm_of(vm.pid)
        self.assertEqual(vmm, vm.pid, "unjailed, the VMM is the process itself")
        st = status(vmm)
        self.assertEqual((st["Seccomp"], st["Uid"].split()[0]), ("0", "0"))
        self.assertIn("warning: --no-jail", self.stop(vm))
        vm, _, _ = self.start_idle("no-cgroup", "--no-cgroup")
        vmm = vmm_of(vm.pid)
        self.assertEqual(status(vmm)["Seccomp"], "2")
        self.assertFalse(read("/proc/%d/cgroup" % vmm).strip().startswith("0::/wisp/"))
        self.assertIn("warning: --no-cgroup", self.stop(vm))

    def test_needs_root(self):
        os.chmod(self.tmp, 0o755)  # so that uid 65534 can run the staged wisp
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            self.wisp, "run", "--console", "none"],
                           capture_output=True, text=True, timeout=60, env=self.env)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("the VMM's jail needs root", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
