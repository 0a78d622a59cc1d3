#!/usr/bin/env python3
"""`wisp serve` on a real KVM, driven the way a FaaS controller would: through its Cap'n Proto
socket (the CLI: wisp invoke --server, wisp template create --server, wisp sandbox ...) and its
HTTP gateway (curl), while the host side is watched (serve's RSS and fds, its VMM processes,
runtime directories).

- load: N invokes of one template at concurrency 8 (N: WISP_SERVE_TEST_N, default 48; the
  issue's full size is 2000), plus short runs at 1 and 32; every answer is checked (each call
  sends a unique payload that the handler echoes back); serve's RSS stays within 10 % and its
  fd count equal after a warm-up; afterwards no VMM runs a guest and no runtime directory is
  left. The same over HTTP with curl when serve has --http.
- admission: calls whose VMs would need twice --max-memory: the excess gets "overloaded"
  (exit 1) while the rest succeed.
- faults: a VMM killed with SIGKILL mid-call (that call fails with vm-failed, exit 126; the
  next succeeds); serve killed with SIGKILL under load (no VMM survives it; a restarted serve
  serves); a template removed while it is invoked (the call finishes, the next is not-found);
  ENOSPC in the store (a small tmpfs as WISP_HOME) while creating a template (a clear error,
  nothing published); a client that disconnects mid-call (its VM is destroyed).
- bad input: malformed and oversized Cap'n Proto messages on the socket, unknown templates,
  bad names, unknown sandboxes; over HTTP: bad JSON, oversized bodies; serve keeps serving.
- huge pages: a clone (pooled or spawned) maps its guest memory from serve's copy on a tmpfs
  of 2 MiB pages (ShmemPmdMapped in its VMM's smaps); with --huge-page-layer 0, not.
- sandboxes: create, exec with stdin and streamed output, ls, kill; snapshot (forks of a
  sandbox as templates: their state in every clone, fresh entropy per clone, a fork of a fork,
  a standalone invoke of a fork, the parent removed under a fork).

Run by ctest (label integration) inside KVM as root (the jail needs root), with cgroup v2.
"""
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import read_rss, smaps_rollup, stage_wisp, wait_for  # noqa: E402

BUILD = os.path.join(ROOT, "build")
LOAD_N = int(os.environ.get("WISP_SERVE_TEST_N", "24"))
POOL = 2
# The handler: echoes its payload; "sleep N ..." first sleeps N seconds (calls that must be in
# flight while something happens to them).
HANDLER = ("/bin/sh -c 'p=$(cat); case \"$p\" in sleep*) set -- $p; sleep $2;; esac; "
           "printf %s \"$p\"'")
MEM_MIB = 128
STANDBY_RESERVE_MIB = 8  # what --max-memory holds for each idle standby (manager/service/service.cc)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


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
    try:
        return read("/proc/%d/stat" % pid).rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def runs_vcpus(pid):
    """A VMM running a guest has its vCPU threads (named vcpuN); a pooled VMM waiting for an
    order has none yet (it holds its VM and vCPU 0's fd already, made ahead)."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return False
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().startswith("vcpu"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread or the process ended meanwhile
    return False


def guest_vmms(pid):
    return [p for p in descendants(pid) if runs_vcpus(p)]


def connectable(path):
    """True once something accepts connections on the Unix socket `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        try:
            c.connect(path)
            return True
        except OSError:
            return False


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Serve:
    """One `wisp serve` with its own socket, WISP_HOME and TMPDIR."""

    def __init__(self, wisp, root, home, *args, http=True):
        self.wisp, self.root, self.home = wisp, root, home
        self.socket = os.path.join(root, "serve.sock")
        self.http = os.path.join(root, "http.sock") if http else None
        self.tmp = os.path.join(root, "run")
        os.makedirs(self.tmp, exist_ok=True)
        os.makedirs(home, mode=0o700, exist_ok=True)
        self.env = dict(os.environ, WISP_HOME=home, TMPDIR=self.tmp)
        self.env.pop("WISP_SERVER", None)
        argv = [wisp, "serve", "--socket", self.socket, *args]
        if self.http:
            argv += ["--http", "unix:" + self.http]
        self.log = open(os.path.join(root, "serve.log"), "ab")
        self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        wait_for(lambda: connectable(self.socket) or self.proc.poll() is not None, 120,
                 "serve's socket")
        if self.proc.poll() is not None:
            raise AssertionError("wisp serve exited %d:\n%s" % (self.proc.returncode,
                                                                self.log_tail()))
        if self.http:
            wait_for(lambda: os.path.exists(self.http), 60, "serve's HTTP socket")

    @property
    def pid(self):
        return self.proc.pid

    def log_tail(self):
        self.log.flush()
        return read(os.path.join(self.root, "serve.log"))[-4000:]

    def cli(self, *args, payload=b"", timeout=300):
        """A wisp command against this serve: (returncode, stdout bytes, stderr text)."""
        env = dict(self.env, WISP_SERVER=self.socket)
        p = subprocess.run([self.wisp, *args], input=payload, capture_output=True, env=env,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")

    def invoke(self, name, payload, *extra, timeout=300):
        return self.cli("invoke", name, "--payload", "-", *extra, payload=payload,
                        timeout=timeout)

    def popen_invoke(self, name, payload):
        env = dict(self.env, WISP_SERVER=self.socket)
        p = subprocess.Popen([self.wisp, "invoke", name, "--payload", "-"], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        p.stdin.write(payload)
        p.stdin.close()
        p.stdin = None  # communicate() must not flush it again
        return p

    def curl(self, path, *args, data=None, timeout=120):
        """curl over the HTTP socket: (status, headers text, body bytes)."""
        hdr = os.path.join(self.root, "hdr-%s" % uuid.uuid4().hex)
        argv = ["curl", "-sS", "--unix-socket", self.http, "-D", hdr, "-o", "-",
                "http://wisp" + path, *args]
        if data is not None:
            argv += ["--data-binary", "@-"]
        p = subprocess.run(argv, input=data, capture_output=True, timeout=timeout)
        headers = read(hdr) if os.path.exists(hdr) else ""
        if os.path.exists(hdr):
            os.unlink(hdr)
        status = 0
        for line in headers.splitlines():
            if line.startswith("HTTP/"):
                status = int(line.split()[1])
        return status, headers, p.stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class ServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wisp-serve-test-")
        cls.wisp = stage_wisp(BUILD, cls.tmp)
        help_text = subprocess.run([cls.wisp, "serve", "--help"], capture_output=True,
                                   text=True).stdout
        cls.has_http = "--http" in help_text and shutil.which("curl") is not None
        cls.home = os.path.join(cls.tmp, "home")
        # At most 8 clones at once: the concurrency-32 run queues in serve's admission (a
        # testbed's single emulated CPU cannot restore 32 clones within the agent deadline).
        cls.serve = cls.start(cls.home, "--pool", str(POOL), "--max-vms", "8")
        rc, _, err = cls.serve.cli("template", "create", "echo", "--handler", HANDLER,
                                   "--mem", str(MEM_MIB), "--warmup", "1", timeout=900)
        if rc != 0:
            raise AssertionError("template create --server failed (%d): %s\n%s" %
                                 (rc, err, cls.serve.log_tail()))

    @classmethod
    def tearDownClass(cls):
        cls.serve.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def start(cls, home, *args, tag=None):
        root = os.path.join(cls.tmp, tag or "serve-%s" % uuid.uuid4().hex[:8])
        os.makedirs(root, exist_ok=True)
        return Serve(cls.wisp, root, home, *args, http=cls.has_http)

    def fresh_serve(self, *args, home=None):
        """A serve of this test's own (sharing the template store unless `home`)."""
        s = self.start(home or self.home, *args)
        self.addCleanup(s.stop)
        return s

    # ---- helpers ---------------------------------------------------------------------------

    def invoke_many(self, serve, n, concurrency, over_http=False):
        """n invokes with unique payloads at `concurrency`; every answer checked."""
        def one(i):
            payload = ("call-%d-%s" % (i, uuid.uuid4().hex)).encode()
            if over_http:
                status, headers, body = serve.curl("/v1/templates/echo/invoke", data=payload)
                self.assertEqual(status, 200, headers + body[-500:].decode(errors="replace"))
                self.assertIn("wisp-exit-code: 0", headers.lower())
            else:
                rc, body, err = serve.invoke("echo", payload, "--deadline", "600")
                self.assertEqual(rc, 0, err)
            self.assertEqual(body, payload)

        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            for f in [pool.submit(one, i) for i in range(n)]:
                f.result()

    def settled(self, serve):
        """No VMM runs a guest; the pool is back to its size; the fds are still. Returns
        (rss KiB, fd count)."""
        wait_for(lambda: not guest_vmms(serve.pid), 60, "no VMM running a guest")
        last = [None]

        def still():
            now = fd_count(serve.pid)
            same, last[0] = now == last[0], now
            return same
        wait_for(still, 60, "serve's fd count to settle", interval=1.0)
        return read_rss(serve.pid)["VmRSS"], last[0]

    @staticmethod
    def runtime_dirs(serve):
        return sorted(d for d in os.listdir(serve.tmp)
                      if os.path.isdir(os.path.join(serve.tmp, d)))

    # ---- load ------------------------------------------------------------------------------

    def test_load(self):
        s = self.serve
        # Warm-up in the load's shapes: allocator arenas, pool refills, and the heap's high-water
        # mark of 32 calls at once (glibc keeps freed memory below its trim threshold: with a
        # baseline taken after 4 calls only, the load's first burst of 32 once grew serve's RSS
        # by 2.7 MB, and it stayed).
        self.invoke_many(s, 4, 4)
        self.invoke_many(s, 32, 32)
        rss0, fds0 = self.settled(s)
        vmms0 = len(descendants(s.pid))
        dirs0 = self.runtime_dirs(s)
        t0 = time.monotonic()
        self.invoke_many(s, LOAD_N, 8)
        took = time.monotonic() - t0
        self.invoke_many(s, 2, 1)
        self.invoke_many(s, 32, 32)
        rss1, fds1 = self.settled(s)
        print("load: %d invokes at concurrency 8 in %.1f s; serve RSS %d -> %d KiB, fds %d -> %d"
              % (LOAD_N, took, rss0, rss1, fds0, fds1), file=sys.stderr)
        self.assertLessEqual(abs(rss1 - rss0), rss0 * 0.10, "serve's RSS grew past 10 %")
        self.assertEqual(fds1, fds0, "serve's fd count changed")
        wait_for(lambda: len(descendants(s.pid)) <= vmms0, 60,
                 "serve's processes back to the idle pool")
        # Idle pooled VMMs may hold a directory each, as before the load; no call leaves one.
        dirs1 = self.runtime_dirs(s)
        self.assertLessEqual(len(dirs1), len(dirs0), "runtime directories left: %s" % dirs1)

    def test_load_over_http(self):
        if not self.has_http:
            self.skipTest("serve has no --http (or no curl)")
        s = self.serve
        self.invoke_many(s, 8, 8, over_http=True)
        rss0, fds0 = self.settled(s)
        self.invoke_many(s, max(LOAD_N // 2, 16), 8, over_http=True)
        rss1, fds1 = self.settled(s)
        self.assertLessEqual(abs(rss1 - rss0), rss0 * 0.10, "serve's RSS grew past 10 %")
        self.assertEqual(fds1, fds0, "serve's fd count changed")

    # ---- admission -------------------------------------------------------------------------

    def test_admission_overloaded_beyond_max_memory(self):
        # Room for two 128 MiB clones besides the 8 MiB held for the one idle standby
        # (--max-memory counts it, service.cc kStandbyReserveMib); four calls that each hold
        # theirs for a few seconds and may not wait for capacity: two run, two get "overloaded".
        s = self.fresh_serve("--pool", "1", "--max-memory", str(2 * MEM_MIB + STANDBY_RESERVE_MIB))
        procs = [(i, subprocess.Popen(
            [s.wisp, "invoke", "echo", "--payload", "-", "--deadline", "0"],
            env=dict(s.env, WISP_SERVER=s.socket), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)) for i in range(4)]
        for i, p in procs:
            p.stdin.write(b"sleep 4 admission-%d" % i)
            p.stdin.close()
            p.stdin = None
        ok = over = 0
        for i, p in procs:
            out, err = p.communicate(timeout=300)
            err = err.decode(errors="replace")
            if p.returncode == 0:
                self.assertEqual(out, b"sleep 4 admission-%d" % i)
                ok += 1
            else:
                self.assertEqual(p.returncode, 1, err)
                self.assertIn("overloaded", err)
                over += 1
        self.assertEqual((ok, over), (2, 2))
        if self.has_http:
            status, headers, _ = s.curl("/v1/templates/echo/invoke", data=b"after")
            self.assertEqual(status, 200, headers)
        rc, out, err = s.invoke("echo", b"after-admission")
        self.assertEqual((rc, out), (0, b"after-admission"), err)

    # ---- faults ----------------------------------------------------------------------------

    def test_vmm_killed_mid_call(self):
        s = self.serve
        # The VMM killed must be this call's: a clone of an earlier test may still be ending.
        wait_for(lambda: not guest_vmms(s.pid), 60, "no VMM running a guest")
        p = s.popen_invoke("echo", b"sleep 30 doomed")
        vmm = wait_for(lambda: next(iter(guest_vmms(s.pid)), None), 120, "the call's VMM")
        os.kill(vmm, signal.SIGKILL)
        out, err = p.communicate(timeout=120)
        err = err.decode(errors="replace")
        self.assertEqual(p.returncode, 126, err)
        self.assertIn("vm-failed", err)
        rc, out, err = s.invoke("echo", b"next-one")
        self.assertEqual((rc, out), (0, b"next-one"), err)

    def test_client_disconnects_mid_call(self):
        s = self.serve
        p = s.popen_invoke("echo", b"sleep 60 abandoned")
        vmm = wait_for(lambda: next(iter(guest_vmms(s.pid)), None), 120, "the call's VMM")
        p.kill()
        p.communicate()
        wait_for(lambda: not alive(vmm), 30, "the abandoned call's VMM %d to end" % vmm)
        rc, out, err = s.invoke("echo", b"still-serving")
        self.assertEqual((rc, out), (0, b"still-serving"), err)

    def test_serve_killed_under_load(self):
        s = self.fresh_serve("--pool", "2")
        calls = [s.popen_invoke("echo", b"sleep 20 load-%d" % i) for i in range(3)]
        wait_for(lambda: len(guest_vmms(s.pid)) >= 1, 120, "calls running")
        procs = descendants(s.pid)
        self.assertTrue(procs)
        s.proc.kill()
        s.proc.wait()
        wait_for(lambda: not any(alive(p) for p in procs), 10,
                 "serve's VMMs %s to die with it" % procs)
        for c in calls:
            c.communicate(timeout=60)
            self.assertNotEqual(c.returncode, 0)
        again = self.fresh_serve("--pool", "1")
        rc, out, err = again.invoke("echo", b"after-restart")
        self.assertEqual((rc, out), (0, b"after-restart"), err)

    def test_template_removed_while_invoked(self):
        s = self.serve
        rc, _, err = s.cli("template", "create", "doomed", "--handler", HANDLER, "--mem",
                           str(MEM_MIB), timeout=900)
        self.assertEqual(rc, 0, err)
        p = s.popen_invoke("doomed", b"sleep 5 in-flight")
        wait_for(lambda: guest_vmms(s.pid), 120, "the call's VMM")
        # The standalone command removes it from the store serve serves.
        env = dict(s.env)
        r = subprocess.run([s.wisp, "template", "rm", "doomed"], env=env, capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        out, err = p.communicate(timeout=120)
        self.assertEqual((p.returncode, out), (0, b"sleep 5 in-flight"), err)
        rc, out, err = s.invoke("doomed", b"too-late")
        self.assertEqual(rc, 1, err)
        self.assertIn("not-found", err)

    def test_enospc_while_creating_template(self):
        home = os.path.join(self.tmp, "tiny-home")
        os.makedirs(home, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", home],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", home])
        s = self.fresh_serve("--pool", "1", home=home)
        rc, _, err = s.cli("template", "create", "big", "--handler", HANDLER, "--mem",
                           str(MEM_MIB), timeout=900)
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"(?i)no space|ENOSPC", err)
        tdir = os.path.join(home, "templates")
        left = os.listdir(tdir) if os.path.isdir(tdir) else []
        self.assertEqual(left, [], "half-published template files: %s" % left)
        rc, out, err = s.cli("sandbox", "ls")
        self.assertEqual(rc, 0, err)

    # ---- bad input -------------------------------------------------------------------------

    def raw_socket(self, data):
        """Sends `data` on serve's Cap'n Proto socket; returns what came back before it closed
        (or b"" after 10 s of nothing)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(10)
            c.connect(self.serve.socket)
            try:
                c.sendall(data)
                return c.recv(65536)
            except (socket.timeout, ConnectionResetError, BrokenPipeError):
                return b""

    def test_malformed_capnp(self):
        # Garbage; a segment table announcing 2^32-1 segments; one segment of 64 MiB (past
        # maxMessageBytes): each answered by closing that connection, never by serve dying.
        self.raw_socket(os.urandom(4096))
        self.raw_socket(struct.pack("<I", 0xFFFFFFFE) + b"\0" * 64)
        self.raw_socket(struct.pack("<II", 0, 8 << 20) + b"\0" * 65536)
        # A well-framed message that is no RPC message.
        self.raw_socket(struct.pack("<II", 0, 2) + struct.pack("<QQ", 0x0000000100000000, 7))
        self.assertIsNone(self.serve.proc.poll(), self.serve.log_tail())
        rc, out, err = self.serve.invoke("echo", b"after-garbage")
        self.assertEqual((rc, out), (0, b"after-garbage"), err)

    def test_unknown_template_and_bad_names(self):
        s = self.serve
        rc, _, err = s.invoke("no-such-template", b"x")
        self.assertEqual(rc, 1, err)
        self.assertIn("not-found", err)
        for bad in ["../etc", ".hidden", "a" * 65, "sp ace"]:
            rc, _, err = s.invoke(bad, b"x")
            self.assertEqual(rc, 1, err)
            self.assertIn("bad-request", err, bad)
        rc, _, err = s.cli("sandbox", "exec", "no-such-sandbox", "--", "true")
        self.assertEqual(rc, 1, err)
        self.assertIn("not-found", err)
        rc, _, err = s.cli("template", "create", "evil", "--handler", "cat", "--kernel",
                           "/etc/passwd", timeout=120)
        self.assertEqual(rc, 1, err)
        self.assertIn("bad-request", err)
        rc, out, err = s.invoke("echo", b"still-fine")
        self.assertEqual((rc, out), (0, b"still-fine"), err)

    def test_oversized_payload(self):
        big = b"x" * (16 * 1024 * 1024 + 1)
        rc, _, err = self.serve.invoke("echo", big)
        self.assertEqual(rc, 1, err)
        self.assertIn("too-large", err)

    def test_http_bad_input(self):
        if not self.has_http:
            self.skipTest("serve has no --http (or no curl)")
        s = self.serve
        status, _, body = s.curl("/v1/templates/echo/invoke", "-H",
                                 "Content-Type: application/json", data=b"{not json")
        self.assertEqual(status, 400, body)
        status, _, _ = s.curl("/v1/templates/no-such/invoke", data=b"x")
        self.assertEqual(status, 404)
        status, _, _ = s.curl("/v1/templates/..%2Fx/invoke", data=b"x")
        self.assertIn(status, (400, 404))
        status, _, _ = s.curl("/v1/templates/echo/invoke", data=b"x" * (17 << 20))
        self.assertEqual(status, 413)
        status, headers, body = s.curl("/v1/templates/echo/invoke", data=b"http-still-fine")
        self.assertEqual((status, body), (200, b"http-still-fine"), headers)

    # ---- sandboxes -------------------------------------------------------------------------

    def test_clones_map_guest_memory_from_the_huge_page_layer(self):
        """A clone maps its memory file's copy on serve's tmpfs of 2 MiB pages
        (manager/huge_page_layer.h): ShmemPmdMapped in its VMM's smaps, from the pool and from
        a spawned restore (--memory-fd). The copy is made in the background, at idle priority,
        when serve starts, so a few sandboxes may come first. With --huge-page-layer 0 a clone maps the store's file (this test's store is on
        a plain tmpfs, or a disk): nothing PMD-mapped."""
        def pmd_mapped_kib(serve):
            rc, out, err = serve.cli("sandbox", "create", "echo", "--timeout", "120")
            self.assertEqual(rc, 0, err + serve.log_tail())
            sid = out.decode().strip()
            try:
                vmms = guest_vmms(serve.pid)
                self.assertEqual(len(vmms), 1, vmms)
                return smaps_rollup(vmms[0])["ShmemPmdMapped"]
            finally:
                rc, _, err = serve.cli("sandbox", "kill", sid)
                self.assertEqual(rc, 0, err)
                wait_for(lambda: not guest_vmms(serve.pid), 60, "the sandbox's VMM to end")

        s = self.fresh_serve("--pool", "1", "--max-vms", "4")
        wait_for(lambda: pmd_mapped_kib(s) > 0, 120, "a pool clone mapped 2 MiB at a time")
        if self.has_http:
            status, _, body = s.curl("/metrics")
            self.assertEqual(status, 200)
            self.assertIn("\nwisp_huge_page_layer_files 1\n", body.decode())
        # No pool: a spawned `wisp-vmm restore` gets the copy as --memory-fd.
        spawned = self.fresh_serve("--pool", "0", "--max-vms", "4")
        wait_for(lambda: pmd_mapped_kib(spawned) > 0, 120, "a spawned clone mapped 2 MiB at a time")
        off = self.fresh_serve("--pool", "1", "--max-vms", "4", "--huge-page-layer", "0")
        self.assertEqual(pmd_mapped_kib(off), 0)
        self.assertEqual(pmd_mapped_kib(off), 0)

    def test_sandbox_lifecycle(self):
        s = self.serve
        rc, out, err = s.cli("sandbox", "create", "echo", "--timeout", "120")
        self.assertEqual(rc, 0, err)
        sid = out.decode().strip()
        self.assertTrue(sid)
        rc, out, err = s.cli("sandbox", "exec", sid, "--", "/bin/sh", "-c",
                             "cat; echo to-stderr >&2; exit 7", payload=b"from-stdin\n")
        self.assertEqual(rc, 7, err)
        self.assertEqual(out, b"from-stdin\n")
        self.assertIn("to-stderr", err)
        # A file written by one exec is there for the next (the sandbox lives between calls).
        rc, _, err = s.cli("sandbox", "exec", sid, "--", "/bin/sh", "-c",
                           "echo kept > /scratch/f")
        if "/scratch" in err and "nonexistent" in err:
            # An agent from before execStream/putFile (issue 12's agent work) has no /scratch.
            print("sandbox: this guest agent has no /scratch; persistence not checked",
                  file=sys.stderr)
        else:
            self.assertEqual(rc, 0, err)
            rc, out, err = s.cli("sandbox", "exec", sid, "--", "cat", "/scratch/f")
            self.assertEqual((rc, out), (0, b"kept\n"), err)
        rc, out, err = s.cli("sandbox", "ls")
        self.assertEqual(rc, 0, err)
        self.assertIn(sid, out.decode())
        rc, _, err = s.cli("sandbox", "kill", sid)
        self.assertEqual(rc, 0, err)
        rc, out, err = s.cli("sandbox", "ls")
        self.assertNotIn(sid, out.decode())
        rc, _, err = s.cli("sandbox", "exec", sid, "--", "true")
        self.assertEqual(rc, 1, err)
        self.assertIn("not-found", err)

    def test_sandbox_snapshot_forks(self):
        """Sandbox.snapshot: a sandbox's state forked into templates (a fork of a fork too),
        served at once, by a standalone invoke as well, surviving its parent's removal."""
        s = self.serve
        t0 = time.monotonic()

        def sandbox(template):
            rc, out, err = s.cli("sandbox", "create", template, "--timeout", "120")
            self.assertEqual(rc, 0, err + s.log_tail())
            return out.decode().strip()

        def sh(sid, script):
            rc, out, err = s.cli("sandbox", "exec", sid, "--", "/bin/sh", "-c", script)
            self.assertEqual(rc, 0, err + s.log_tail())
            return out.decode()

        def snapshot(sid, name):
            rc, out, err = s.cli("sandbox", "snapshot", sid, name)
            return rc, out.decode(), err

        def probe(sid):
            """The forked state and 16 fresh random bytes of the guest."""
            return sh(sid, "cat /scratch/state; head -c 16 /dev/urandom | od -An -tx1 | "
                           "tr -d ' \\n'").split("\n")

        sid = sandbox("echo")
        rc, _, err = s.cli("sandbox", "exec", sid, "--", "/bin/sh", "-c",
                           "echo warmed-1 > /scratch/state")
        if rc != 0 and "/scratch" in err:
            s.cli("sandbox", "kill", sid)
            # State that outlives an exec needs the agent's /scratch (issue 12's agent work).
            self.skipTest("this guest agent has no /scratch: rebuild the agent initramfs")
        self.assertEqual(rc, 0, err)
        rc, out, err = snapshot(sid, "fork1")
        self.assertEqual(rc, 0, err + s.log_tail())
        self.assertIn("template fork1 (from echo)", out)
        # The sandbox runs on after its snapshot, its state intact.
        self.assertEqual(sh(sid, "cat /scratch/state; echo more >> /scratch/state"),
                         "warmed-1\n")
        # Refusals: a bad name, a taken one, an unknown sandbox; serve keeps serving.
        for name in ["../x", ".hidden", "fork1", "echo"]:
            rc, _, err = snapshot(sid, name)
            self.assertEqual(rc, 1, err)
            self.assertIn("bad-request", err)
        rc, _, err = snapshot("no-such-sandbox", "fork9")
        self.assertEqual(rc, 1, err)
        self.assertIn("not-found", err)

        rc, out, err = s.cli("template", "ls")
        self.assertEqual(rc, 0, err)
        self.assertIn("fork1", out.decode())
        # Clones of the fork: the state is there, and each clone is its own (fresh entropy).
        a, b = sandbox("fork1"), sandbox("fork1")
        pa, pb = probe(a), probe(b)
        self.assertEqual((pa[0], pb[0]), ("warmed-1", "warmed-1"))
        self.assertEqual(len(pa[1]), 32, pa)
        self.assertNotEqual(pa[1], pb[1])
        # The handler of the parent serves the fork, through serve and standalone.
        for i in range(2):
            payload = ("fork1-call-%d" % i).encode()
            rc, body, err = s.invoke("fork1", payload)
            self.assertEqual((rc, body), (0, payload), err)
        env = dict(s.env)
        env.pop("WISP_SERVER", None)
        p = subprocess.run([self.wisp, "invoke", "fork1", "--payload", "-"], input=b"solo",
                           capture_output=True, env=env, timeout=300)
        self.assertEqual((p.returncode, p.stdout), (0, b"solo"), p.stderr)

        # A fork of the fork (three layers), over HTTP when serve has it.
        sh(a, "echo warmed-2 > /scratch/state")
        if s.http:
            status, headers, body = s.curl("/v1/sandboxes/%s/snapshot" % a, data=b"{bad json")
            self.assertEqual(status, 400, headers)
            status, headers, body = s.curl("/v1/sandboxes/%s/snapshot" % a,
                                           data=b'{"name": "fork2"}')
            self.assertEqual(status, 200, headers + body.decode(errors="replace"))
            info = json.loads(body)
            self.assertEqual((info["name"], info["parent"]), ("fork2", "fork1"))
        else:
            rc, out, err = snapshot(a, "fork2")
            self.assertEqual(rc, 0, err)
        for sb in (sid, a, b):
            s.cli("sandbox", "kill", sb)
        # Its parent removed, the fork still clones (it holds links to the files it needs).
        rc, _, err = s.cli("template", "rm", "fork1")
        self.assertEqual(rc, 0, err)
        c = sandbox("fork2")
        self.assertEqual(probe(c)[0], "warmed-2")
        s.cli("sandbox", "kill", c)
        rc, body, err = s.invoke("fork2", b"after-rm")
        self.assertEqual((rc, body), (0, b"after-rm"), err)
        gen = os.path.realpath(os.path.join(self.home, "templates", "fork2"))
        layers = sorted(d for d in os.listdir(gen) if d.startswith("parent-"))
        self.assertEqual(len(layers), 2, os.listdir(gen))
        for name in ("fork2",):
            rc, _, err = s.cli("template", "rm", name)
            self.assertEqual(rc, 0, err)
        print("sandbox snapshot forks: %.1f s" % (time.monotonic() - t0), file=sys.stderr)

    def test_sandbox_commands_need_a_server(self):
        env = dict(os.environ)
        env.pop("WISP_SERVER", None)
        r = subprocess.run([self.wisp, "sandbox", "ls"], env=env, capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--server", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
