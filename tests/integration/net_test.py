#!/usr/bin/env python3
"""virtio-net on a TAP, on a real KVM: a function fetches a file over HTTP and gets it whole.

The test makes a network namespace of its own holding a TAP with an address and a small HTTP
server bound to that address (python3 -m http.server), then, inside that namespace, runs
`wisp exec --net tap=...,ip=...,gw=... --network` (the VMM jailed, as always) whose command
fetches a 1 MiB file with the guest's busybox wget and prints its SHA-256. All traffic stays
inside the namespace. Also: a TAP that does not exist is a clear error before any boot.

NICs across snapshots: a template made with `--net tap=...` gives its clone (wisp invoke) the
NIC, whose handler fetches the file whole; a `wisp run` guest holding a TCP connection to the
test's echo server is snapshotted and restored after the server forgot the connection: the
old connection is reset (not hung) and a new one works; a guest streaming TCP out while the
host floods it with UDP leaves vsock (other calls to its agent) and the VMM's control socket
answering within a bound.

Needs root (network namespaces, TAPs). Run by ctest (label integration) inside KVM.
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import stage_wisp, wait_for  # noqa: E402

BUILD = os.path.join(ROOT, "build")
HOST_ADDR, GUEST_ADDR, PORT = "10.77.0.1", "10.77.0.2", 8080
ECHO_PORT, SINK_PORT = 9000, 9001
TAP = "wtap0"
NET = f"tap={TAP},ip={GUEST_ADDR}/24,gw={HOST_ADDR}"
# While the guest floods, a control-socket call must answer within CONTROL_BOUND_S and a call
# to its agent over vsock within VSOCK_BOUND_S, both before the flood ends (FLOOD_S): a loop
# stalled by the NIC would answer only then. Emulator times: idle, either takes 0.5 to 2.5 s;
# a vsock call also waits for the guest's vCPU, which the flood keeps busy (seen: up to 7 s).
CONTROL_BOUND_S, VSOCK_BOUND_S, FLOOD_S = 10.0, 15.0, 30
FLOOD_MIN_S = 15  # the host's flood lasts at least this

# The test's servers, run in its namespace: an echo server that answers each line "pong
# LINE" ("bye" closes) and can forget its connections (SIGUSR1: closed with SO_LINGER 0, so
# the kernel no longer knows them); a sink that reads and drops; a UDP flood at the guest.
ECHO_SERVER = r"""
import selectors, signal, socket, struct, sys
sel = selectors.DefaultSelector()
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
sel.register(srv, selectors.EVENT_READ)
bufs, forget = {}, []
signal.signal(signal.SIGUSR1, lambda *_: forget.append(1))
def drop(c, reset=False):
    sel.unregister(c)
    bufs.pop(c, None)
    if reset:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
print("listening", flush=True)
while True:
    if forget:
        for c in list(bufs):
            drop(c, reset=True)
        forget.clear()
        print("forgot", flush=True)
    for key, _ in sel.select(timeout=0.2):
        c = key.fileobj
        if c is srv:
            conn, _ = srv.accept()
            bufs[conn] = b""
            sel.register(conn, selectors.EVENT_READ)
            continue
        try:
            data = c.recv(4096)
        except OSError:
            data = b""
        if not data:
            drop(c)
            continue
        buf = bufs[c] + data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip() == b"bye":
                drop(c)
                break
            c.sendall(b"pong " + line.strip() + b"\n")
        else:
            bufs[c] = buf
"""
SINK_SERVER = r"""
import socket, sys, threading
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
def drain(c):
    while c.recv(1 << 16):
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"""
UDP_FLOOD = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
payload = b"x" * 1400
while True:
    try:
        s.sendto(payload, (sys.argv[1], 7))
    except OSError:
        pass
"""

# The guest (wisp's default initramfs, wisp_action=cmd) of the reset test: eth0 up, a
# connection held open with a ping each second, then, once that connection ends, a new one.
HOLD_SCRIPT = (
    f"ip addr add {GUEST_ADDR}/24 dev eth0; ip link set eth0 up; mkfifo /tmp/in; "
    f"(while :; do echo ping; sleep 1; done) > /tmp/in & "
    f"nc {HOST_ADDR} {ECHO_PORT} < /tmp/in > /tmp/out 2> /tmp/err & n=$!; "
    "i=0; while ! grep -q pong /tmp/out && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done; "
    "echo wisp-guest: held-up $(grep -c pong /tmp/out); "
    "wait $n; echo wisp-guest: held-ended status=$? $(cat /tmp/err); "
    f"echo wisp-guest: new-$(printf 'new\\nbye\\n' | nc {HOST_ADDR} {ECHO_PORT} | tr ' ' -)"
)


def in_ns(ns, *argv):
    """argv run in network namespace `ns`. nsenter, not `ip netns exec`, which also mounts a
    sysfs of the namespace over /sys, hiding the cgroup2 mount the VMM's jail needs."""
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def read_text(path):
    """The file's text so far ("" before it exists)."""
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()


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

    def wisp_env(self):
        return dict(os.environ, WISP_HOME=os.path.join(self.tmp, "wisp-home"))

    def start_server(self, script, port):
        p = subprocess.Popen(in_ns(self.ns, sys.executable, "-c", script, HOST_ADDR, str(port)),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        wait_for(lambda: f":{port:04X} 00000000:0000 0A" in ns_run(
            self.ns, "cat", "/proc/net/tcp", capture_output=True, text=True).stdout,
            60, f"the server on port {port} to listen")
        return p

    def start_vm(self, console, ctl, script):
        """`wisp run` of the default initramfs guest on the TAP, running `script`."""
        vm = subprocess.Popen(
            in_ns(self.ns, self.wisp, "run", "--mem", "128", "--net", f"tap={TAP}",
                  "--console", console, "--control-socket", ctl, "--cmdline",
                  f'quiet wisp_action=cmd wisp_cmd="{script}"'),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.addCleanup(vm.wait)
        self.addCleanup(vm.kill)
        return vm

    def wisp_call(self, *args, timeout=120):
        t0 = time.monotonic()
        r = ns_run(self.ns, self.wisp, *args, capture_output=True, text=True, timeout=timeout,
                   check=False, env=self.wisp_env())
        self.assertEqual(r.returncode, 0, f"wisp {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout, time.monotonic() - t0

    def test_template_clone_fetches_a_file_whole(self):
        want = hashlib.sha256(self.blob).hexdigest()
        handler = (f"sh -c 'wget -q -O /tmp/blob http://{HOST_ADDR}:{PORT}/blob && "
                   "wc -c < /tmp/blob && sha256sum /tmp/blob'")
        # Warmed up (one call) and probed (a clone's first call records the working set): the
        # probe clone restores with the NIC too.
        _, made = self.wisp_call("template", "create", "nettpl", "--net", NET, "--network",
                                 "--handler", handler, timeout=300)
        out, took = self.wisp_call("invoke", "nettpl", "-n", "--timeout", "120", timeout=300)
        print(f"net_test: template create {made:.1f} s, a clone's 1 MiB fetch {took:.1f} s",
              file=sys.stderr)
        words = out.split()
        self.assertEqual(words[:2], [str(len(self.blob)), want], out)
        # The clone went and gave its TAP back: a second clone restores on it too.
        out, _ = self.wisp_call("invoke", "nettpl", "-n", "--timeout", "120", timeout=300)
        self.assertEqual(out.split()[:2], [str(len(self.blob)), want], out)

    def test_restore_resets_old_connections_new_ones_work(self):
        echo = self.start_server(ECHO_SERVER, ECHO_PORT)
        self.assertEqual(echo.stdout.readline().strip(), "listening")
        console, ctl = os.path.join(self.tmp, "hold.console"), os.path.join(self.tmp, "hold.ctl")
        vm = self.start_vm(console, ctl, HOLD_SCRIPT)
        read = read_text
        wait_for(lambda: "held-up" in read(console) or vm.poll() is not None, 180,
                 "the guest's connection to the echo server")
        self.assertIn("held-up", read(console), vm.stderr.read() if vm.poll() is not None else "")
        self.assertNotIn("held-up 0", read(console))
        snap = os.path.join(self.tmp, "hold.snap")
        self.wisp_call("vm", "pause", "--control-socket", ctl)
        self.wisp_call("snapshot", "create", "--control-socket", ctl, snap, timeout=300)
        vm.terminate()  # SIGTERM: the VMM gone (its TAP free) when this returns
        vm.wait(timeout=60)
        # The peer forgets the connection (gone from its kernel: the next segment gets a RST),
        # as a server does whose client vanished.
        echo.send_signal(signal.SIGUSR1)
        self.assertEqual(echo.stdout.readline().strip(), "forgot")
        resets = self.tcp_out_resets()
        clone_console = os.path.join(self.tmp, "clone.console")
        # On the TAP the snapshot names (no --net).
        t0 = time.monotonic()
        clone = subprocess.run(
            in_ns(self.ns, self.wisp, "snapshot", "restore", snap, "--console", clone_console),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
        took = time.monotonic() - t0
        text = read(clone_console)
        print(f"net_test: restored guest after {took:.1f} s: "
              + " | ".join(l for l in text.splitlines() if "wisp-guest:" in l), file=sys.stderr)
        self.assertEqual(clone.returncode, 0, clone.stderr[-3000:] + text[-2000:])
        self.assertIn("held-ended", text, "the old connection hung: " + text[-2000:])
        # Ended by the peer's reset (busybox nc exits 0 either way): the server's kernel,
        # which no longer knew the connection, answered the guest's next ping with a RST.
        self.assertGreater(self.tcp_out_resets(), resets, "the peer sent no reset")
        self.assertIn("wisp-guest: new-pong-new", text, text[-2000:])
        # Given a TAP that is not there, the restore says which NIC and which TAP.
        r = ns_run(self.ns, self.wisp, "snapshot", "restore", snap, "--net", "tap=wisp-nosuch1",
                   "--console", "none", capture_output=True, text=True, timeout=120,
                   check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("the snapshot's NIC eth0: TAP wisp-nosuch1: no such network interface",
                      r.stderr)

    def tcp_out_resets(self):
        """The namespace's count of TCP resets sent (/proc/net/snmp Tcp: OutRsts)."""
        snmp = ns_run(self.ns, "cat", "/proc/net/snmp", capture_output=True, text=True).stdout
        names, values = [l.split()[1:] for l in snmp.splitlines() if l.startswith("Tcp:")]
        return int(values[names.index("OutRsts")])

    def test_a_flooding_guest_leaves_vsock_and_control_answering(self):
        """An agent guest (wisp run of the agent initramfs) streams TCP out through one call
        while the host floods it with UDP: other calls over vsock (wisp exec --attach) and on
        the control socket (wisp vm stats) answer within the bound meanwhile."""
        self.start_server(SINK_SERVER, SINK_PORT)
        vsock, ctl = os.path.join(self.tmp, "fa.vsock"), os.path.join(self.tmp, "fa.ctl")
        initrd = os.path.join(os.path.dirname(self.wisp), "..", "guest",
                              "agent-initramfs.cpio.gz")
        vm = subprocess.Popen(
            in_ns(self.ns, self.wisp, "run", "--mem", "256", "--initrd", initrd, "--net", NET,
                  "--vsock-uds", vsock, "--control-socket", ctl, "--console", "none"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.addCleanup(vm.wait)
        self.addCleanup(vm.kill)
        attach = lambda *cmd, **kw: self.wisp_call("exec", "--attach", vsock, *cmd, **kw)  # noqa
        wait_for(lambda: vm.poll() is not None or ns_run(
            self.ns, self.wisp, "exec", "--attach", vsock, "--", "/bin/true", check=False,
            capture_output=True, timeout=60).returncode == 0, 180, "the agent guest")
        self.assertIsNone(vm.poll(), vm.stderr.read() if vm.poll() is not None else "")
        _, idle = attach("--", "/bin/echo", "hi")
        before = self.tap_bytes()
        # The guest's stream out, one call that lasts a while; the host's datagrams in.
        stream = subprocess.Popen(
            in_ns(self.ns, self.wisp, "exec", "--attach", vsock, "--network", "--timeout",
                  "120", "--", "/bin/sh", "-c",
                  f"timeout {FLOOD_S} sh -c 'cat /dev/zero | nc {HOST_ADDR} {SINK_PORT}'"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(stream.wait)
        self.addCleanup(stream.kill)
        flood = subprocess.Popen(in_ns(self.ns, sys.executable, "-c", UDP_FLOOD, GUEST_ADDR),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(flood.wait)
        self.addCleanup(flood.kill)
        flood_start = time.monotonic()
        time.sleep(3)
        calls, stats = [], []
        for _ in range(2):
            out, took = attach("--", "/bin/echo", "hi", timeout=VSOCK_BOUND_S * 3)
            self.assertEqual(out.strip(), "hi")
            calls.append(took)
            out, took = self.wisp_call("vm", "stats", "--control-socket", ctl,
                                       timeout=CONTROL_BOUND_S * 3)
            self.assertIn("resident", out)
            stats.append(took)
        still_streaming = stream.poll() is None
        # Enough flood to count on (an emulated guest and a busy host move little per second).
        time.sleep(max(0.0, FLOOD_MIN_S - (time.monotonic() - flood_start)))
        flood.kill()
        stream.kill()  # its VM goes at the end of the test; no need to wait out the flood
        stream.wait()
        moved = {k: v - before[k] for k, v in self.tap_bytes().items()}
        print(f"net_test: flood: vsock call idle {idle:.2f} s, flooded "
              + ", ".join(f"{t:.2f}" for t in calls) + " s; stats calls "
              + ", ".join(f"{t:.2f}" for t in stats) + f" s; TAP bytes {moved}", file=sys.stderr)
        # Answered during the flood, not once it was over.
        self.assertTrue(still_streaming, "the guest's stream ended before the calls were made")
        self.assertIsNone(vm.poll(), "the VM ended during the flood")
        self.assertLess(max(calls), VSOCK_BOUND_S, calls)
        self.assertLess(max(stats), CONTROL_BOUND_S, stats)
        # Traffic both ways meanwhile: the guest's stream out (the TAP's rx; seen in the
        # testbed: 0.5 to 7 MB), the host's datagrams in (its tx: frames the VMM took, and
        # frames the TAP dropped when neither it nor the guest kept up; seen: 400 to 23000).
        self.assertGreater(moved["rx_bytes"], 256 << 10, moved)
        self.assertGreater(moved["tx_packets"] + moved["tx_dropped"], 256, moved)

    def tap_bytes(self):
        """The TAP's byte counters from the namespace's /proc/net/dev (its /sys is the
        host's): "TAP: rx_bytes ... (8 receive fields) tx_bytes ...". rx is the guest's TX."""
        dev = ns_run(self.ns, "cat", "/proc/net/dev", capture_output=True, text=True).stdout
        fields = next(line.split(":", 1)[1].split() for line in dev.splitlines()
                      if line.strip().startswith(TAP + ":"))
        return {"rx_bytes": int(fields[0]), "tx_bytes": int(fields[8]),
                "tx_packets": int(fields[9]), "tx_dropped": int(fields[11])}

    def test_missing_tap_is_a_clear_error(self):
        r = ns_run(self.ns, self.wisp, "exec", "--net", "tap=wisp-nosuch0", "--", "/bin/true",
                   capture_output=True, text=True, timeout=120, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("TAP wisp-nosuch0: no such network interface", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
