#!/usr/bin/env python3
"""A VM's own network (bare `wisp exec --net`), on a real KVM: namespace, veth, NAT, allow-list.

The test makes a network namespace of its own for the servers, joined to the host by a veth it
makes (10.99.0.1 the host's end, 10.99.0.2 to .4 the servers'; all private, nothing leaves the
machine), with HTTP servers on 10.99.0.2:8080 (allowed), 10.99.0.2:8081 (another port of the
allowed host), 10.99.0.3:8080 (another address), 10.99.0.4:8080 (allowed, every port) and one in
the host's namespace on 10.99.0.1:8083 (the host's own address). Each is first checked
reachable from the host, so a failure from the VM is the allow-list's doing. Then `wisp exec
--net --allow 10.99.0.2/32:8080 --allow 10.99.0.4 --network` fetches a 1 MiB file whole through
wisp's namespace (TAP wisp0, veth wvN, SNAT) and the host's forwarding, reaches 10.99.0.4, and
fails fast on the three others; `--dns` is the handler's /etc/resolv.conf. Afterwards nothing of wisp's is left
on the host: no wv* link, no nft table. A `wisp exec` SIGKILLed while its VM runs leaves
nothing either (its VMM dies with it, and the anonymous namespace with the VMM), nor does a
SIGKILLed VMM (wisp removes the network), nor `wisp run --net`, which hands the namespace to
the VMM it becomes. A template made with a bare --net gives each of four clones at once a
namespace of its own (the same inside addresses), and each fetches its own file; so do the
clones of `wisp serve` (a warm one and fresh ones), which leave nothing when serve exits.

Needs root. Run by ctest (label integration) inside KVM.
"""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import stage_wisp, wait_for  # noqa: E402

BUILD = os.path.join(ROOT, "build")
HOST, SERVER, OTHER, ANY = "10.99.0.1", "10.99.0.2", "10.99.0.3", "10.99.0.4"
PORT, OTHER_PORT, HOST_PORT = 8080, 8081, 8083
DNS = "10.99.0.53"
VETH = "wnst0"  # the test's veth, host end (not wv*: that prefix is wisp's)


def run(*argv, **kw):
    kw.setdefault("check", True)
    return subprocess.run(argv, **kw)


def in_ns(ns, *argv):
    # nsenter, not `ip netns exec`, which mounts the namespace's sysfs over /sys.
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def wisp_links():
    out = run("ip", "-o", "link", "show", capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
            if line.split(":")[1].strip().startswith("wv")]


def children(pid):
    """`pid`'s children; none once it has gone (a thread or the process may end mid-read)."""
    pids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def nft_tables():
    return run("nft", "list", "tables", capture_output=True, text=True).stdout.strip()


def http_server(argv_prefix, bind, port, directory):
    return subprocess.Popen(
        [*argv_prefix, sys.executable, "-m", "http.server", str(port), "--bind", bind,
         "--directory", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fetch(addr, port):
    with urllib.request.urlopen(f"http://{addr}:{port}/blob", timeout=10) as r:
        return r.read()


class NetnsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("network namespaces need root")
        cls.tmp = tempfile.mkdtemp(prefix="wisp-netns-")
        cls.wisp = stage_wisp(BUILD, os.path.join(cls.tmp, "wisp"))
        cls.ns = f"wisp-srv-{os.getpid()}"
        cls.servers = []
        run("ip", "netns", "add", cls.ns)
        run("ip", "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", cls.ns)
        run("ip", "addr", "add", f"{HOST}/24", "dev", VETH)
        run("ip", "link", "set", VETH, "up")
        # Replies from the servers enter the host here and are forwarded to wisp's veth.
        run("sysctl", "-qw", f"net.ipv4.conf.{VETH}.forwarding=1")
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", f"{SERVER}/24", "dev", "eth0"],
                     ["ip", "addr", "add", f"{OTHER}/24", "dev", "eth0"],
                     ["ip", "addr", "add", f"{ANY}/24", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"],
                     ["ip", "route", "add", "default", "via", HOST]):
            run(*in_ns(cls.ns, *argv))
        cls.www = os.path.join(cls.tmp, "www")
        os.makedirs(cls.www)
        cls.blob = os.urandom(1 << 20)
        with open(os.path.join(cls.www, "blob"), "wb") as f:
            f.write(cls.blob)
        ns = in_ns(cls.ns)
        cls.servers = [http_server(ns, "0.0.0.0", PORT, cls.www),
                       http_server(ns, SERVER, OTHER_PORT, cls.www),
                       http_server([], HOST, HOST_PORT, cls.www)]
        for addr, port in ((SERVER, PORT), (OTHER, PORT), (ANY, PORT), (SERVER, OTHER_PORT),
                           (HOST, HOST_PORT)):
            wait_for(lambda: cls._reachable(addr, port), 60, f"{addr}:{port} from the host")

    @classmethod
    def _reachable(cls, addr, port):
        try:
            return fetch(addr, port) == cls.blob
        except OSError:
            return False

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.kill()
            s.wait()
        run("ip", "link", "del", VETH, check=False)
        run("ip", "netns", "del", cls.ns, check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assert_nothing_left(self):
        wait_for(lambda: not wisp_links(), 10, "wisp's veth links to go")
        self.assertNotIn("wisp", nft_tables())

    def test_allowed_fetch_whole_everything_else_blocked(self):
        self.assertEqual(wisp_links(), [])
        # A refused flow fails at once (the namespace answers with a TCP reset): wget says
        # "refused", where a probe that broke for another reason would not.
        probe = "".join(
            f"if timeout 20 wget -q -O /tmp/p http://{a}:{p}/blob 2>/tmp/err; then "
            f"echo REACHED {a}:{p}; else echo BLOCKED {a}:{p} rc=$? $(head -c 200 /tmp/err); fi; "
            for a, p in ((SERVER, OTHER_PORT), (OTHER, PORT), (HOST, HOST_PORT), (ANY, PORT)))
        cmd = (f"wget -q -O /tmp/blob http://{SERVER}:{PORT}/blob && wc -c < /tmp/blob && "
               f"sha256sum /tmp/blob && {probe} cat /etc/resolv.conf")
        t0 = time.monotonic()
        r = run(self.wisp, "exec", "--mem", "256", "--net", "--allow", f"{SERVER}/32:{PORT}",
                "--allow", ANY, "--dns", DNS, "--network", "--", "/bin/sh", "-c", cmd,
                capture_output=True, text=True, timeout=240, check=False)
        print(f"netns_test: exec with a 1 MiB fetch and 4 probes took "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        words = r.stdout.split()
        self.assertEqual(words[0], str(len(self.blob)), r.stdout)
        self.assertEqual(words[1], hashlib.sha256(self.blob).hexdigest(), r.stdout)
        lines = r.stdout.splitlines()
        for a, p in ((SERVER, OTHER_PORT), (OTHER, PORT), (HOST, HOST_PORT)):
            blocked = [x for x in lines if x.startswith(f"BLOCKED {a}:{p} ")]
            self.assertEqual(len(blocked), 1, r.stdout + r.stderr)
            self.assertIn("refused", blocked[0], r.stdout + r.stderr)
        # The same probe gets through where a rule (CIDR, every port) allows it.
        self.assertIn(f"REACHED {ANY}:{PORT}", r.stdout, r.stdout + r.stderr)
        # --dns: the handler's resolver.
        self.assertTrue(r.stdout.endswith(f"nameserver {DNS}\n"), r.stdout)
        self.assert_nothing_left()

    def test_two_vms_at_once_have_the_same_inside_and_both_get_through(self):
        # Both guests are 172.16.0.2: each namespace SNATs to its own slot's address.
        cmd = f"wget -q -O /tmp/b http://{SERVER}:{PORT}/blob && sha256sum /tmp/b && sleep 2"
        argv = [self.wisp, "exec", "--mem", "128", "--net", "--allow", f"{SERVER}/32:{PORT}",
                "--network", "--", "/bin/sh", "-c", cmd]
        vms = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
        slots = wait_for(lambda: len(wisp_links()) == 2 and wisp_links(), 60, "two veths")
        self.assertEqual(len(set(slots)), 2, slots)
        for vm in vms:
            out, err = vm.communicate(timeout=240)
            self.assertEqual(vm.returncode, 0, out + err)
            self.assertIn(hashlib.sha256(self.blob).hexdigest(), out, out + err)
        self.assert_nothing_left()

    def net_template(self):
        """WISP_HOME with the template "nettpl" (bare --net; made once for the class) whose
        handler fetches the file its payload names and prints its hash; and those files."""
        cls = type(self)
        if getattr(cls, "home", None):
            return cls.home, cls.parts
        home = os.path.join(self.tmp, "home")
        parts = {f"part{i}": os.urandom(64 << 10) for i in range(4)}
        for n, data in parts.items():
            with open(os.path.join(self.www, n), "wb") as f:
                f.write(data)
        handler = (f"sh -c 'read f; wget -q -O /tmp/p http://{SERVER}:{PORT}/$f "
                   f"&& sha256sum /tmp/p'")
        # (With a NIC limit far above what the testbed's guest moves: the keys reach wisp-vmm
        # and the clones' snapshot; rate_limit_test measures limits.)
        made = run(self.wisp, "template", "create", "nettpl", "--mem", "128", "--net",
                   "--net-limit", "rx-bw=512M", "--allow", f"{SERVER}/32:{PORT}", "--network",
                   "--warmup", "0", "--handler", handler, env=dict(os.environ, WISP_HOME=home),
                   capture_output=True, text=True, timeout=300, check=False)
        self.assertEqual(made.returncode, 0, made.stdout + made.stderr)
        self.assert_nothing_left()  # the template's VM and its network are gone
        cls.home, cls.parts = home, parts
        return home, parts

    def invoke_each(self, env, names, *server):
        """`wisp invoke nettpl` once per name, all at once, each asserted to answer its file's
        hash."""
        _, parts = self.net_template()
        calls = []
        for n in names:
            payload = os.path.join(self.tmp, n + ".payload")
            with open(payload, "w") as f:
                f.write(n + "\n")
            calls.append(subprocess.Popen(
                [self.wisp, "invoke", "nettpl", *server, "--payload", payload, "--timeout",
                 "120"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for call, n in zip(calls, names):
            out, err = call.communicate(timeout=300)
            self.assertEqual(call.returncode, 0, out + err)
            self.assertEqual(out.split()[:1], [hashlib.sha256(parts[n]).hexdigest()], out + err)

    def test_template_clones_at_once_each_get_their_own_answer(self):
        # A template made with a bare --net: every clone restores into a namespace of its own
        # (the same 172.16.0.2 inside, its own veth and SNAT, the template's allow-list), so
        # four run at once; each fetches the file its payload names and answers with its hash.
        home, parts = self.net_template()
        t0 = time.monotonic()
        self.invoke_each(dict(os.environ, WISP_HOME=home), sorted(parts))
        print(f"netns_test: 4 clones at once, each its own fetch: "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
        self.assert_nothing_left()

    def test_serve_clones_of_a_net_template(self):
        # wisp serve's clones (a warm one kept restored, then fresh ones: its pre-jailed pool
        # cannot hold a namespace's TAP) each get a network of their own too; serve's exit
        # takes every one with it.
        home, parts = self.net_template()
        env = dict(os.environ, WISP_HOME=home)
        sock = os.path.join(self.tmp, "serve.sock")
        serve = subprocess.Popen([self.wisp, "serve", "--socket", sock, "--pool", "1",
                                  "--warm", "nettpl=1"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: os.path.exists(sock) or serve.poll() is not None, 60,
                     "serve's socket")
            self.assertIsNone(serve.poll(), serve.stderr.read() if serve.poll() else "")
            wait_for(lambda: len(wisp_links()) >= 1, 120, "the warm clone's network")
            self.invoke_each(env, sorted(parts)[:2], "--server", sock)
        finally:
            serve.send_signal(signal.SIGTERM)
            _, err = serve.communicate(timeout=120)
        self.assertEqual(serve.returncode, 0, err)
        self.assert_nothing_left()

    def test_sigkilled_wisp_leaves_nothing(self):
        p = subprocess.Popen([self.wisp, "exec", "--net", "--", "/bin/sleep", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(wisp_links, 60, "the VM's veth to appear")
            time.sleep(1)  # the VMM is started and in the namespace by now, or close to
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.assert_nothing_left()

    def test_sigkilled_vmm_leaves_nothing(self):
        # The VMM (its jail's supervisor, wisp's child) SIGKILLed: wisp sees it go and removes
        # the VM's network.
        p = subprocess.Popen([self.wisp, "exec", "--net", "--", "/bin/sleep", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(wisp_links, 60, "the VM's veth to appear")
            vmm = wait_for(lambda: children(p.pid), 30, "the VMM to start")
            os.kill(vmm[0], signal.SIGKILL)
            _, err = p.communicate(timeout=60)
            self.assertNotEqual(p.returncode, 0, err)
        finally:
            p.kill()
            p.wait()
        self.assert_nothing_left()

    def test_wisp_run_net_fetches_and_leaves_nothing(self):
        # wisp run's plain guest (no agent): its init sets eth0 up by the fixed plan itself.
        cmd = (f"ip addr add 172.16.0.2/30 dev eth0 && ip link set eth0 up && "
               f"ip route add default via 172.16.0.1 && "
               f"wget -q -O /tmp/b http://{SERVER}:{PORT}/blob && sha256sum /tmp/b")
        r = run(self.wisp, "run", "--mem", "128", "--net", "--allow", f"{SERVER}/32:{PORT}",
                "--cmdline", f'quiet wisp_action=cmd wisp_cmd="{cmd}"',
                capture_output=True, text=True, timeout=240, check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(hashlib.sha256(self.blob).hexdigest(), r.stdout, r.stdout + r.stderr)
        self.assertIn("cmd exit=0", r.stdout, r.stdout + r.stderr)
        self.assert_nothing_left()

    def test_wisp_run_net_leaves_nothing_when_the_vmm_fails(self):
        # wisp run makes the network, then becomes wisp-vmm: the namespace (and the veth) is
        # the VMM's alone, and goes with it.
        r = run(self.wisp, "run", "--net", "--allow", "10.0.0.0/8", "--kernel",
                "/nonexistent/vmlinux", capture_output=True, text=True, check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("/nonexistent/vmlinux", r.stderr)
        self.assert_nothing_left()

    def test_allow_without_net_is_a_usage_error(self):
        r = run(self.wisp, "exec", "--allow", "10.0.0.0/8", "--", "/bin/true",
                capture_output=True, text=True, check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--allow needs a bare --net", r.stderr)
        r = run(self.wisp, "exec", "--net", "--allow", "10.0.0.300/8", "--", "/bin/true",
                capture_output=True, text=True, check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--allow 10.0.0.300/8: the address '10.0.0.300'", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
