#!/usr/bin/env python3
"""The pool of pre-spawned, pre-jailed VMMs (wisp-vmm standby, manager/vmm_pool.h) on a real KVM.

- A standby VMM, before it is ordered anything, is jailed: a uid other than 0, no effective
  capability, no_new_privs, a root of its own (/dev/kvm, no host file), its own network
  namespace. Then
  ordered to restore a template (`wisp template create`), it reports ready, and the template's
  handler answers through the agent of the clone (real result checked). The same calls through
  `wisp-vmm restore` (the spawn path) give the same result; both paths' times are printed:
  order->ready against spawn->ready, and the whole call.
- A standby given a garbage order (not the protocol, a wrong count of descriptors, files that
  are not snapshot files) exits 1 naming what was wrong, and its jail root is gone.
- A standby ordered to boot the agent guest (a boot order: kernel and initrd as descriptors)
  boots it, and its agent runs a command (real result checked); `wisp-vmm run` boots the same
  machine to compare times. Bad boot orders (a wrong descriptor count, a machine over the
  standby's class, an over-long command line, a file that is no kernel) are refused with a
  message naming what was wrong, and the standby exits 1 leaving no jail root.
- `wisp serve --pool 1` builds a template in a standby of its pool (its progress says so), and
  the template serves a call.
- A VmmPool of 4, filled, one taken and the pool refilled, then destroyed, leaves no VMM
  process and no runtime directory.

Run by ctest (label integration) inside KVM, as root (the jail needs root).
"""
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import stage_wisp, wait_for  # noqa: E402

BUILD = os.path.join(ROOT, "build")
AGENT_GUEST = os.path.join(BUILD, "guest", "agent-initramfs.cpio.gz")
KERNEL = os.path.join(BUILD, "guest", "vmlinux")
PY_ROOTFS = os.path.join(BUILD, "guest", "python-rootfs.ext4")
# Runs from the template's root filesystem (a drive): only there is python3.
PY_UPPER = 'python3 -c "import sys; sys.stdout.write(sys.stdin.read().upper())"'


def json_lines(text):
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def processes_mentioning(text):
    """Pids whose command line holds `text`."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(p))
        except OSError:
            pass
    return pids


def pool_idle(http_socket):
    """serve's wisp_pool_idle gauge, read from its HTTP gateway's /metrics (-1: not yet)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(10)
            c.connect(http_socket)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: wisp\r\nConnection: close\r\n\r\n")
            data = b""
            # Read until the gauge's line is whole (or the server closes).
            while b"\nwisp_pool_target" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return -1
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("wisp_pool_idle "):
            return int(float(line.split()[1]))
    return -1


def working_set_pages(path):
    """The pages a working-set file (snapshot/working_set.h) lists."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack_from("<I", data, 12)[0]
    return sum(struct.unpack_from("<QQ", data, 24 + 16 * i)[1] for i in range(n))


class VmmPoolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wisp-pool-")
        cls.wisp = stage_wisp(BUILD, cls.tmp)
        cls.bin = os.path.dirname(cls.wisp)
        cls.run_dir = os.path.join(cls.tmp, "run")
        os.makedirs(cls.run_dir)
        cls.env = dict(os.environ, WISP_HOME=os.path.join(cls.tmp, "home"), TMPDIR=cls.run_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def probe(self, *args, timeout=600):
        p = subprocess.run([os.path.join(self.bin, "wisp-pool-probe"), *args],
                           capture_output=True, text=True, timeout=timeout, env=self.env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, "wisp-pool-probe %s:\n%s\n%s" % (args, p.stdout, p.stderr))
        return json_lines(p.stdout)

    def runtime_dirs(self):
        return [d for d in os.listdir(self.run_dir) if d.startswith("wisp-")]

    @unittest.skipUnless(os.path.exists(AGENT_GUEST), "no " + AGENT_GUEST + " (make all builds it)")
    def assert_orders_refused(self, prefix, cases):
        """Each case (name, order text, files sent with it, expected message): a fresh standby
        takes the order, exits 1 saying why, and leaves no jail root."""
        for name, text, files, why in cases:
            with self.subTest(name):
                jail_dir = os.path.join(self.tmp, prefix + name)
                p, sock = self.standby(jail_dir)
                fds = [os.open(f, os.O_RDONLY) for f in files]
                try:
                    socket.send_fds(sock, [text], fds)
                finally:
                    for fd in fds:
                        os.close(fd)
                _, err = p.communicate(timeout=60)
                sock.close()
                self.assertEqual(p.returncode, 1, err)
                self.assertIn(why, err)
                self.assertFalse(os.path.exists(os.path.join(jail_dir, "root")), err)

    def test_standby_is_jailed_then_restores_and_invokes(self):
        p = subprocess.run([self.wisp, "template", "create", "upper", "--handler", "tr a-z A-Z",
                            "--mem", "128"], capture_output=True, text=True, timeout=900,
                           env=self.env, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, "template create:\n" + p.stderr)
        rounds = int(os.environ.get("WISP_POOL_ROUNDS", "2"))
        lines = self.probe("clone", "upper", "hello pool", str(rounds))
        jail = [l["standby"] for l in lines if "standby" in l][0]
        print("standby before its order: %s" % jail, file=sys.stderr)
        uids = jail["uid"].split()
        self.assertEqual(len(uids), 4, jail)
        self.assertTrue(all(u == uids[0] and u != "0" for u in uids), jail)
        self.assertEqual(jail["cap_eff"], "0000000000000000", jail)
        self.assertEqual(jail["no_new_privs"], "1", jail)
        self.assertTrue(jail["root_ino_differs"], jail)
        self.assertIn("/dev/kvm", jail["root_files"], jail)
        for host_path in ["/etc/passwd", "/bin/sh", "/usr/bin/python3"]:
            self.assertNotIn(host_path, jail["root_files"], jail)
        self.assertNotEqual(jail["net_ns"], jail["host_net_ns"], jail)
        pool = [l["pool"] for l in lines if "pool" in l]
        spawn = [l["spawn"] for l in lines if "spawn" in l]
        self.assertEqual(len(pool), rounds)
        self.assertEqual(len(spawn), rounds)
        # Both restore paths prefetched the template's working set (snapshot/working_set.h)
        # before the clone ran: at least that many pages were mapped when it was ready.
        ws_pages = working_set_pages(os.path.join(self.env["WISP_HOME"], "templates", "upper",
                                                  "snapshot", "working-set"))
        self.assertGreater(ws_pages, 0)
        for r in pool + spawn:
            self.assertEqual(r["exit_code"], 0, r)
            self.assertEqual(r["out"], "HELLO POOL", r)
            self.assertGreaterEqual(r["resident_pages"], ws_pages, r)
        for r in pool:
            self.assertRegex(r["ready_line"], r"^ready [0-9.]+ [0-9.]+ [0-9.]+$")

        def median(rows, key):
            v = sorted(r[key] for r in rows)
            return v[len(v) // 2]
        print("pool  (order->ready, order->result) ms: %s; median %.1f / %.1f" %
              ([(round(r["ready_ms"], 1), round(r["total_ms"], 1)) for r in pool],
               median(pool, "ready_ms"), median(pool, "total_ms")), file=sys.stderr)
        print("spawn (spawn->ready, spawn->result) ms: %s; median %.1f / %.1f" %
              ([(round(r["ready_ms"], 1), round(r["total_ms"], 1)) for r in spawn],
               median(spawn, "ready_ms"), median(spawn, "total_ms")), file=sys.stderr)
        self.assertEqual(self.runtime_dirs(), [])

    @unittest.skipUnless(os.path.exists(PY_ROOTFS), "no " + PY_ROOTFS + " (make all builds it)")
    def test_standby_restores_a_template_with_a_drive(self):
        # The drive reaches the jailed standby as a descriptor in the order (its root holds no
        # path to it), admitted as a restore admits it.
        p = subprocess.run([self.wisp, "template", "create", "pyupper", "--rootfs", PY_ROOTFS,
                            "--handler", PY_UPPER, "--mem", "128", "--warmup", "1"],
                           capture_output=True, text=True, timeout=900, env=self.env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, "template create:\n" + p.stderr)
        lines = self.probe("clone", "pyupper", "from the drive", "1")
        for path in ("pool", "spawn"):
            rows = [l[path] for l in lines if path in l]
            self.assertEqual(len(rows), 1, lines)
            self.assertEqual((rows[0]["exit_code"], rows[0]["out"]), (0, "FROM THE DRIVE"), rows)
        self.assertEqual(self.runtime_dirs(), [])

    def standby(self, jail_dir):
        """A wisp-vmm standby on a socketpair; returns (process, our end) once it stands by."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        os.makedirs(jail_dir, mode=0o700)
        p = subprocess.Popen([os.path.join(self.bin, "wisp-vmm"), "standby", "--order-fd",
                              str(theirs.fileno()), "--mem", "128", "--console", "none",
                              "--jail-dir", jail_dir],
                             pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        theirs.close()
        ours.settimeout(120)
        self.assertEqual(ours.recv(512), b"standby\n")
        return p, ours

    def test_garbage_orders_fail_cleanly(self):
        junk = os.path.join(self.tmp, "junk")
        with open(junk, "wb") as f:
            f.write(b"WISPSNAP" + b"\xff" * 4000)
        cases = [
            ("text", b"give me a VM\n", [], "not a wisp-order/1 message"),
            ("count", b"wisp-order/1 restore 1 - /x\n", ["/dev/null"], "1 descriptors, 2 expected"),
            ("files", b"wisp-order/1 restore 1 - /x\n", ["/dev/null", "/dev/null"],
             "not a regular file"),
            ("junk", b"wisp-order/1 restore 1 - /x\n", [junk, junk], "layer 0/state"),
        ]
        self.assert_orders_refused("jail-", cases)

    @unittest.skipUnless(os.path.exists(AGENT_GUEST), "no " + AGENT_GUEST + " (make all builds it)")
    def test_standby_boots_the_agent_guest(self):
        # WISP_POOL_BOOT_COMPARE=1: `wisp-vmm run` boots the same machine too, for the times
        # (another boot: left out of `make test`, which is at its time limit).
        compare = os.environ.get("WISP_POOL_BOOT_COMPARE") == "1"
        args = ("boot", "hello boot") if compare else ("boot", "hello boot", "-", "tr a-z A-Z")
        lines = self.probe(*args)
        paths = ("pool_boot", "spawn_boot") if compare else ("pool_boot",)
        rows = {path: [l[path] for l in lines if path in l] for path in paths}
        for path, r in rows.items():
            self.assertEqual(len(r), 1, lines)
            self.assertEqual((r[0]["exit_code"], r[0]["out"]), (0, "HELLO BOOT"), r)
        self.assertRegex(rows["pool_boot"][0]["ready_line"], r"^ready [0-9.]+ [0-9.]+ [0-9.]+$")
        times = ["%s %.1f / %.1f" % (p, r[0]["ready_ms"], r[0]["total_ms"])
                 for p, r in rows.items()]
        print("boot (agent answers / command result) ms: " + ", ".join(times), file=sys.stderr)
        self.assertEqual(self.runtime_dirs(), [])

    @unittest.skipUnless(os.path.exists(PY_ROOTFS), "no " + PY_ROOTFS + " (make all builds it)")
    def test_standby_boots_from_a_root_filesystem(self):
        # The image reaches the jailed standby as drive 0 of a boot order with the rootfs flag;
        # python3 exists only there.
        lines = self.probe("boot", "from the rootfs", PY_ROOTFS, PY_UPPER)
        rows = [l["pool_boot"] for l in lines if "pool_boot" in l]
        self.assertEqual(len(rows), 1, lines)
        self.assertEqual((rows[0]["exit_code"], rows[0]["out"]), (0, "FROM THE ROOTFS"), rows)
        self.assertEqual(self.runtime_dirs(), [])

    @unittest.skipUnless(os.path.exists(KERNEL), "no " + KERNEL + " (make all builds it)")
    def test_bad_boot_orders_fail_cleanly(self):
        junk = os.path.join(self.tmp, "junk-kernel")
        with open(junk, "wb") as f:
            f.write(b"\x7fELF" + b"\xff" * 4000)
        cases = [
            ("count", b"wisp-order/1 boot 128 1 - initrd quiet\n", [KERNEL],
             "came with 1 descriptors, 2 expected"),
            ("class", b"wisp-order/1 boot 256 1 - - quiet\n", [KERNEL],
             "(256 MiB, 1 vCPUs) is larger than this standby's class (128 MiB, 2 vCPUs)"),
            ("cmdline", b"wisp-order/1 boot 128 1 - - " + b"x" * 2048 + b"\n", [KERNEL],
             "the kernel command line is 2048 bytes, over the kernel's limit of 2047"),
            ("kernel", b"wisp-order/1 boot 128 1 - - quiet\n", [junk],
             "kernel (the boot order's kernel)"),
        ]
        self.assert_orders_refused("jail-boot-", cases)

    @unittest.skipUnless(os.path.exists(AGENT_GUEST), "no " + AGENT_GUEST + " (make all builds it)")
    def test_serve_builds_a_template_in_a_standby(self):
        root = os.path.join(self.tmp, "serve")
        home = os.path.join(root, "home")
        os.makedirs(home, mode=0o700)
        sock, http = os.path.join(root, "serve.sock"), os.path.join(root, "http.sock")
        env = dict(self.env, WISP_HOME=home)
        env.pop("WISP_SERVER", None)
        with open(os.path.join(root, "serve.log"), "wb") as log:
            serve = subprocess.Popen([self.wisp, "serve", "--socket", sock, "--pool", "1",
                                      "--http", "unix:" + http], env=env, stdout=log,
                                     stderr=log, stdin=subprocess.DEVNULL)
        try:
            try:
                wait_for(lambda: pool_idle(http) >= 1 or serve.poll() is not None, 120,
                         "a standby in serve's pool")
            except AssertionError:
                with open(os.path.join(root, "serve.log"), errors="replace") as f:
                    raise AssertionError("no standby in serve's pool; serve's log:\n" +
                                         f.read()[-3000:])
            self.assertIsNone(serve.poll(), "serve exited")
            env["WISP_SERVER"] = sock
            p = subprocess.run([self.wisp, "template", "create", "bootup", "--handler",
                                "tr a-z A-Z", "--mem", "128"], capture_output=True, text=True,
                               timeout=600, env=env, stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("booted by a standing-by VMM of the pool", p.stderr)
            p = subprocess.run([self.wisp, "invoke", "bootup", "--payload", "-"],
                               input="from serve", capture_output=True, text=True, timeout=300,
                               env=env)
            self.assertEqual((p.returncode, p.stdout), (0, "FROM SERVE"), p.stderr)
        finally:
            serve.terminate()
            serve.wait(timeout=60)

    def test_closed_order_socket_ends_a_standby_quietly(self):
        jail_dir = os.path.join(self.tmp, "jail-closed")
        p, sock = self.standby(jail_dir)
        sock.close()
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertFalse(os.path.exists(os.path.join(jail_dir, "root")), err)

    def test_a_destroyed_pool_leaves_nothing(self):
        lines = self.probe("pool", "4")
        pool = {k: v for l in lines if "pool" in l for k, v in l["pool"].items()}
        self.assertEqual(pool["idle_after_take"], 3, pool)
        self.assertEqual(pool["size_after_refill"], 4, pool)
        self.assertTrue(pool["destroyed"])
        deadline = time.monotonic() + 10
        while processes_mentioning(self.bin + "/wisp-vmm") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(processes_mentioning(self.bin + "/wisp-vmm"), [])
        self.assertEqual(self.runtime_dirs(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
