#!/usr/bin/env python3
"""serve benchmark: one call of a template's handler, four ways, side by side in one run.

  serve-pool      through a running `wisp serve`: a pre-jailed VMM of its pool restores a
                  fresh clone per call
  serve-warm      the same with warm clones (--warm NAME=N): restored ahead, taken, reseeded
  invoke-process  `wisp invoke` as a process per call (what a controller does without serve)
  exec-cold       `wisp exec`: a cold boot per call

--handler picks the function, the same in every mode: exec (default), `cat` run afresh in the
exec sandbox per call on the agent initramfs; python, the warm Python worker
(/usr/lib/wisp/python_worker.py: upper-cases its payload) on the Python rootfs, whose template
holds the started interpreter, so a warm call pays no process start in the guest at all.

Each is measured from the request to the result as the client sees it: for serve, over its
HTTP gateway with one persistent connection per client thread (a controller's connection), or
with `wisp invoke --server` per call (Cap'n Proto; a process per call) when serve has no
--http or --client capnp is given; for the others, process spawn to exit. p50/p99 latency and
throughput at concurrency 1, 8 and 32; ratios against invoke-process (issue 12's goals on the
testbed: serve-pool <= 0.5x, serve-warm <= 0.2x). At each concurrency the modes run interleaved,
round by round (issue 15 item 3): each round every mode makes one batch of as many calls as
there are clients, the order turned round every round (exec-cold, with fewer calls, in rounds
spread evenly), so that a slow period of a noisy host hits every mode alike. Then --soak invokes through serve at
concurrency 8, in chunks of 500 that take --soak-modes in turn (default: the pool, then warm
clones), with serve's RSS and fd count before and after (flat: RSS within 10 %, fds equal).
JSON to --out, a table on stdout. Calls start once serve holds all its --warm clones (its
/metrics), so the first warm calls do not find the pool still filling from serve's start;
--no-warm-touch runs serve without its warm clones' pages made ready ahead (written set copied,
working set read), to compare; --vcpu-counts runs serve with --vcpu-counts, so the stage table
also has each cell's median guest exits, nested page faults and pages written per call.

Back to back, a client sends its next call the moment the last one answers: on the testbed's one
CPU a pool's refill and a warm clone's restore then compete with the calls themselves, so those
cells measure throughput more than what pre-work saves. --paced-calls N adds a cell per mode at
concurrency 1 whose client waits --pace-ms between calls (every mode alike; the wait is not
counted): a controller below its capacity, where serve's pre-work runs in the idle time between
arrivals. Both are reported, each with its ratio.

Beside the client's numbers, each serve call's own stage timings (the Wisp-Timings header of the
HTTP gateway: queue, restore, connect or resume, reseed, invoke and the agent's handler time
within it, total) are kept and their medians printed per mode and concurrency, with how many
calls a warm clone served and how many warm clones were restoring in the background meanwhile
(they compete for the CPU): the table says where a call's time goes.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from goals import print_verdicts  # noqa: E402
from vmrun import (environment_name, log, pct, read_rss, stage_wisp, wait_for,  # noqa: E402
                   write_json)
from wisp_cli import BenchError, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ["serve-pool", "serve-warm", "invoke-process", "exec-cold"]
SERVE_MODES = MODES[:2]  # the calls through serve (the soak's)
SOAK_CHUNK = 500  # the soak's calls per chunk, each chunk one mode, its progress logged
PYTHON_WORKER = ["/usr/bin/python3", "/usr/lib/wisp/python_worker.py"]


# Per handler: its template's options (besides the name and --mem), what `wisp exec` runs for
# a cold call, and the answer a payload must get.
def handler_spec(name, rootfs):
    if name == "exec":
        return {"create": ["--handler", "cat"], "cold": ["--", "cat"], "argv": ["cat"],
                "answer": lambda payload: payload}
    return {"create": ["--rootfs", rootfs, "--mode", "worker", "--handler",
                       " ".join(PYTHON_WORKER)],
            "cold": ["--rootfs", rootfs, "--mode", "worker", "--"] + PYTHON_WORKER,
            "argv": PYTHON_WORKER, "answer": lambda payload: payload.upper()}


def connectable(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        try:
            c.connect(path)
            return True
        except OSError:
            return False


IDLE_S = 20  # a kept-alive HTTP connection idle longer is replaced (serve's limit: 30 s)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=300):
        super().__init__("wisp", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Bench:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.handler = handler_spec(args.handler, args.rootfs)
        self.wisp = stage_wisp(os.path.join(ROOT, "build"), work) if not args.no_stage \
            else args.wisp
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, mode=0o700)
        self.env = dict(os.environ, WISP_HOME=self.home)
        self.env.pop("WISP_SERVER", None)
        self.socket = os.path.join(work, "serve.sock")
        self.http = os.path.join(work, "http.sock")
        self.local = threading.local()
        self.serve = None

    def create_templates(self):
        for name in ("echo-pool", "echo-warm"):
            run([self.wisp, "template", "create", name] + self.handler["create"] +
                ["--mem", str(self.args.mem), "--warmup", "2"], env=self.env, timeout=900,
                what="wisp template create " + name)

    def start_serve(self):
        help_text = subprocess.run([self.wisp, "serve", "--help"], capture_output=True,
                                   text=True).stdout
        use_http = self.args.client == "http" or (self.args.client == "auto" and
                                                  "--http" in help_text)
        argv = [self.wisp, "serve", "--socket", self.socket, "--pool", str(self.args.pool),
                "--warm", "echo-warm=%d" % self.args.warm, "--max-vms", str(self.args.max_vms)]
        if use_http:
            argv += ["--http", "unix:" + self.http]
        if self.args.no_warm_touch:
            argv.append("--no-warm-touch")
        if self.args.vcpu_counts:
            argv.append("--vcpu-counts")
        self.client = "http" if use_http else "capnp-cli"
        self.log = open(os.path.join(self.work, "serve.log"), "wb")
        self.serve = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                      stdout=self.log, stderr=self.log)
        wait_for(lambda: connectable(self.socket) or self.serve.poll() is not None, 120,
                 "serve's socket")
        if self.serve.poll() is not None:
            raise BenchError("wisp serve exited %d: %s" % (self.serve.returncode,
                                                           open(self.log.name).read()[-3000:]))
        if use_http:
            wait_for(lambda: os.path.exists(self.http), 60, "serve's HTTP socket")

    def wait_warm_ready(self, timeout=600):
        """Waits until serve holds all its warm clones of echo-warm (GET /metrics), so that the
        measured calls meet the warm pool as it is once running, not still filling from serve's
        start (a call then finds none and is restored from the pool instead)."""
        if self.client != "http" or self.args.warm == 0:
            return
        pattern = re.compile(r'^wisp_warm_clones_ready\{template="echo-warm"\} (\d+)$', re.M)

        def ready():
            conn = UnixHTTPConnection(self.http, timeout=30)
            try:
                conn.request("GET", "/metrics")
                body = conn.getresponse().read().decode()
            finally:
                conn.close()
            m = pattern.search(body)
            return m is not None and int(m.group(1)) >= self.args.warm
        t0 = time.monotonic()
        wait_for(ready, timeout, "serve's %d warm clones of echo-warm" % self.args.warm,
                 interval=1.0)
        log("serve_bench: %d warm clones ready %.0f s after serve started" % (
            self.args.warm, time.monotonic() - t0))

    def stop_serve(self):
        if self.serve and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait()

    # One call each way; returns the client-side milliseconds and serve's own timings (a dict
    # of api/wisp.capnp's Timings, or None when not through the HTTP gateway). Every answer is
    # checked.
    def call(self, mode, payload):
        timings = None
        t0 = time.monotonic()
        if mode.startswith("serve-"):
            name = "echo-pool" if mode == "serve-pool" else "echo-warm"
            if self.client == "http":
                conn = getattr(self.local, "conn", None)
                # serve closes a connection idle for 30 s (the gateway's pipelineTimeout), as
                # one is while the other modes' batches run (8 cold boots at once take longer):
                # such a connection is replaced before a call rather than written to closed.
                if conn is not None and time.monotonic() - self.local.used > IDLE_S:
                    conn.close()
                    conn = None
                if conn is None:
                    conn = self.local.conn = UnixHTTPConnection(self.http)
                conn.request("POST", "/v1/templates/%s/invoke" % name, body=payload)
                resp = conn.getresponse()
                out = resp.read()
                self.local.used = time.monotonic()
                if resp.status != 200:
                    raise BenchError("%s: HTTP %d: %r" % (mode, resp.status, out[:300]))
                try:
                    timings = json.loads(resp.getheader("Wisp-Timings") or "null")
                except ValueError as e:
                    raise BenchError("%s: bad Wisp-Timings header: %s" % (mode, e))
            else:
                out = run([self.wisp, "invoke", name, "--payload", "-", "--server", self.socket,
                           "--deadline", "600"],
                          payload, env=self.env, what="wisp invoke --server").stdout
        elif mode == "invoke-process":
            out = run([self.wisp, "invoke", "echo-pool", "--payload", "-"], payload,
                      env=self.env, what="wisp invoke").stdout
        else:
            out = run([self.wisp, "exec", "--mem", str(self.args.mem), "--payload", "-"] +
                      self.handler["cold"], payload, env=self.env, what="wisp exec").stdout
        ms = (time.monotonic() - t0) * 1000
        want = self.handler["answer"](payload)
        if out != want:
            raise BenchError("%s answered %r, expected %r" % (mode, out[:200], want))
        return ms, timings

    def batch(self, pool, mode, calls, pace_ms=0, first=0):
        """`calls` calls of `mode` through `pool` (its threads are the concurrent clients, each
        with its own connection): the answers (ms, timings) in call order and the wall time.
        `pace_ms`: each client waits that long before each call (an arrival gap; not in the
        latency). `first` numbers the payloads on from earlier batches."""
        def one(i):
            if pace_ms:
                time.sleep(pace_ms / 1000.0)
            return self.call(mode, ("%s-%d-%s" % (mode, i, uuid.uuid4().hex)).encode())

        t0 = time.monotonic()
        answers = list(pool.map(one, range(first, first + calls)))
        return answers, time.monotonic() - t0

    def level(self, mode, concurrency, calls, pace_ms=0):
        """`calls` calls of one mode at `concurrency`, back to back: latencies and throughput
        (the soak, where only serve runs)."""
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            answers, wall = self.batch(pool, mode, calls, pace_ms)
        return cell(answers, wall, concurrency, pace_ms)

    def interleaved(self, calls, concurrency, pace_ms=0):
        """Every mode of `calls` (mode -> number of calls) at `concurrency`, interleaved round
        by round (issue 15 item 3, as snapshot_bench and boot_bench do): in each round a mode
        makes one batch of `concurrency` calls (one per client), the modes one after another,
        the order turned round every round, so that a slow period of the host falls on every
        mode alike rather than on whichever ran then. A mode with fewer calls (exec-cold) has
        its batches spread evenly over the rounds. First a warm-up batch per mode, not kept.
        Returns mode -> its cell; its throughput is its calls over the summed wall time of
        its batches (each ends with its slowest call)."""
        batches = {m: -(-n // concurrency) for m, n in calls.items()}
        rounds = max(batches.values())
        got = {m: [] for m in calls}
        wall = {m: 0.0 for m in calls}
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            for m, n in calls.items():
                self.batch(pool, m, min(concurrency, n), pace_ms)
            for i in range(rounds):
                order = [m for m in calls if spread(i, batches[m], rounds)]
                for m in (order if i % 2 == 0 else order[::-1]):
                    k = min(concurrency, calls[m] - len(got[m]))
                    answers, w = self.batch(pool, m, k, pace_ms, first=len(got[m]))
                    got[m] += answers
                    wall[m] += w
                if (i + 1) % 8 == 0 or i + 1 == rounds:
                    log("serve_bench: concurrency %d%s, round %d/%d: %s" % (
                        concurrency, " paced" if pace_ms else "", i + 1, rounds,
                        ", ".join("%s %.0f ms" % (m, got[m][-1][0]) for m in calls if got[m])))
        return {m: cell(got[m], wall[m], concurrency, pace_ms, batches[m]) for m in calls}

    def serve_state(self):
        """serve's RSS (KiB) and fd count once no clone runs and its fds are still."""
        last = [None]

        def still():
            now = len(os.listdir("/proc/%d/fd" % self.serve.pid))
            same, last[0] = now == last[0], now
            return same
        wait_for(still, 60, "serve's fd count to settle", interval=1.0)
        return {"rss_kib": read_rss(self.serve.pid).get("VmRSS"), "fds": last[0]}

    def soak(self, n, modes):
        """n invokes at concurrency 8 in chunks of SOAK_CHUNK, the chunks taking `modes` in
        turn (both of serve's paths: a clone restored on the call, a warm clone taken and
        its refill), each chunk's progress logged; serve's RSS and fds before and after."""
        for m in modes:
            self.level(m, 8, 16)  # warm-up
        before = self.serve_state()
        t0 = time.monotonic()
        done, per_mode = 0, {m: 0 for m in modes}
        while done < n:
            mode = modes[(done // SOAK_CHUNK) % len(modes)]
            k = min(SOAK_CHUNK, n - done)
            self.level(mode, 8, k)
            done += k
            per_mode[mode] += k
            log("serve_bench: soak: %d/%d invokes, %.1f a second, serve RSS %s KiB" % (
                done, n, done / (time.monotonic() - t0), read_rss(self.serve.pid).get("VmRSS")))
        took = time.monotonic() - t0
        after = self.serve_state()
        flat = (abs(after["rss_kib"] - before["rss_kib"]) <= 0.10 * before["rss_kib"] and
                after["fds"] == before["fds"])
        return {"invokes": n, "concurrency": 8, "modes": per_mode, "seconds": took,
                "before": before, "after": after, "flat": flat}


def comma_list(text):
    """The non-empty, stripped items of a comma list."""
    return [item.strip() for item in text.split(",") if item.strip()]


def spread(i, k, n):
    """True at k of the n rounds 0..n-1, evenly spread (the first round included): where a
    mode with k batches runs among n rounds (snapshot_bench's rule)."""
    return k > 0 and (i * k) % n < k


def cell(answers, wall, concurrency, pace_ms, rounds=1):
    """One mode's row at one concurrency: latencies, throughput and serve's stage medians."""
    lat = [ms for ms, _ in answers]
    out = {"calls": len(answers), "concurrency": concurrency, "p50_ms": pct(lat, 50),
           "p99_ms": pct(lat, 99), "mean_ms": sum(lat) / len(lat),
           "throughput_per_s": len(answers) / wall, "wall_s": wall, "latencies_ms": lat,
           "pace_ms": pace_ms, "rounds": rounds}
    stages = stage_medians(answers)
    if stages:
        out["stages"] = stages
        out["timings"] = [t for _, t in answers]  # per call, in call order
    return out


# Per stage, the median over one cell's calls of serve's own timings (ms): each stage's own
# length (restore without the queue before it), and "outside" = the client's time minus serve's
# total (HTTP, the client, the loop's turn). Plus how many calls a warm clone served and the
# median number of warm clones restoring in the background during a call.
STAGES = ["queue", "restore", "connect", "resume", "reseed", "invoke", "handler", "total",
          "outside"]


def stage_medians(answers):
    rows = [(ms, t) for ms, t in answers if t]
    if not rows:
        return None

    def part(ms, t, stage):
        if stage == "restore":
            return max(0.0, t.get("restoreMs", 0) - t.get("queueMs", 0)) \
                if not t.get("warm") else 0.0
        if stage == "outside":
            return ms - t.get("totalMs", 0)
        return t.get(stage + "Ms", 0)
    out = {st: pct([part(ms, t, st) for ms, t in rows], 50) for st in STAGES}
    out["warm_served"] = sum(1 for _, t in rows if t.get("warm"))
    out["pooled"] = sum(1 for _, t in rows if t.get("pooled"))
    out["warm_filling"] = pct([t.get("warmFilling", 0) for _, t in rows], 50)
    out["calls"] = len(rows)
    counted = [t for _, t in rows if t.get("vcpuCounted")]
    if counted:  # --vcpu-counts: the guest's exits, nested page faults and pages written
        for key, name in (("exits", "exits"), ("nestedPageFaults", "npf"),
                          ("writtenPages", "written")):
            out[name] = pct([int(t.get(key, 0)) for t in counted], 50)
    return out


def print_stages(report):
    cells = [(mode, lv) for mode in report["modes"] for lv in report["results"].get(mode, [])
             if lv.get("stages")]
    cells += [(mode, lv) for mode, lv in report.get("paced", {}).items() if lv.get("stages")]
    if not cells:
        return
    print("serve's stage medians, ms (Wisp-Timings; restore without queue; outside = client"
          " - total)")
    counts = any("npf" in lv["stages"] for _, lv in cells)
    print("%-11s %4s " % ("mode", "conc") + " ".join("%7s" % st for st in STAGES) +
          "  warm pooled filling" + ("   exits    npf written" if counts else ""))
    for mode, lv in cells:
        st = lv["stages"]
        conc = "%d%s" % (lv["concurrency"], "pc" if lv.get("pace_ms") else "")
        print("%-11s %4s " % (mode, conc) +
              " ".join("%7.1f" % st[s] for s in STAGES) +
              "  %2d/%-2d %2d/%-2d %5.1f" % (st["warm_served"], st["calls"], st["pooled"],
                                             st["calls"], st["warm_filling"]) +
              ("  %6.0f %6.0f %7.0f" % (st["exits"], st["npf"], st["written"])
               if "npf" in st else ""))


def print_table(report):
    print("serve_bench on %s (client: %s; handler: %s)" % (
        report["environment"], report["client"], " ".join(report["handler"])))
    print("%-15s %5s %6s %10s %10s %10s %12s" % ("mode", "conc", "calls", "p50 ms", "p99 ms",
                                                 "calls/s", "p50 vs proc"))
    for mode in report["modes"]:
        for lv in report["results"].get(mode, []):
            ratio = report["ratios"].get(mode, {}).get(str(lv["concurrency"]))
            print("%-15s %5d %6d %10.1f %10.1f %10.2f %12s" % (
                mode, lv["concurrency"], lv["calls"], lv["p50_ms"], lv["p99_ms"],
                lv["throughput_per_s"], "%.2fx" % ratio if ratio is not None else "-"))
    for mode, lv in report.get("paced", {}).items():
        ratio = report.get("paced_ratios", {}).get(mode)
        print("%-15s %5s %6d %10.1f %10.1f %10s %12s" % (
            mode, "1 pc", lv["calls"], lv["p50_ms"], lv["p99_ms"], "-",
            "%.2fx" % ratio if ratio is not None else "-"))
    if report.get("paced"):
        print("(1 pc: concurrency 1, paced: %d ms between calls, not counted)" %
              next(iter(report["paced"].values()))["pace_ms"])
    if report.get("soak"):
        s = report["soak"]
        print("soak: %d invokes at concurrency 8 in %.1f s (%s); serve RSS %s -> %s KiB, fds %s"
              " -> %s (%s)" % (s["invokes"], s["seconds"],
                               ", ".join("%s %d" % mc for mc in s.get("modes", {}).items()),
                               s["before"]["rss_kib"], s["after"]["rss_kib"], s["before"]["fds"],
                               s["after"]["fds"], "flat" if s["flat"] else "NOT flat"))
    print_stages(report)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=32, help="calls per mode and concurrency")
    ap.add_argument("--cold-calls", type=int, default=8,
                    help="calls per concurrency for exec-cold (a boot each)")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--cold-concurrency", default=None,
                    help="the levels of --concurrency at which exec-cold runs (default: all; "
                         "each cold call boots a VM, so a long sweep names a few)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma list of the ways to measure (invoke-process is the baseline)")
    ap.add_argument("--soak", type=int, default=0,
                    help="invokes through serve with RSS and fds checked (make soak: 10000)")
    ap.add_argument("--soak-modes", default=",".join(SERVE_MODES),
                    help="the serve modes the soak's chunks take in turn")
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--warm", type=int, default=8)
    ap.add_argument("--no-warm-touch", action="store_true",
                    help="serve's warm clones skip having their pages made ready ahead "
                         "(wisp serve --no-warm-touch), to measure what it gains")
    ap.add_argument("--max-vms", type=int, default=16,
                    help="serve's clone limit (calls beyond it queue in its admission)")
    ap.add_argument("--mem", type=int, default=None,
                    help="guest MiB (default: 128 for exec, 256 for python)")
    ap.add_argument("--handler", choices=["exec", "python"], default="exec",
                    help="the function: exec (cat, a process per call) or python (a warm worker"
                    " on the Python rootfs)")
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build/guest/python-rootfs.ext4"),
                    help="the Python rootfs image (--handler python)")
    ap.add_argument("--client", choices=["auto", "http", "capnp"], default="auto")
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--paced-calls", type=int, default=0,
                    help="calls per mode at concurrency 1 with --pace-ms between them (0: none)")
    ap.add_argument("--pace-ms", type=int, default=1500,
                    help="the paced cell's wait before each call (ms)")
    ap.add_argument("--vcpu-counts", action="store_true",
                    help="serve with --vcpu-counts: each call's guest exits, nested page faults"
                    " and pages written, their medians in the stage table")
    ap.add_argument("--no-stage", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/serve.json"))
    args = ap.parse_args()
    if args.mem is None:
        args.mem = 128 if args.handler == "exec" else 256
    if args.handler == "python" and not os.path.isfile(args.rootfs):
        ap.error("--rootfs %s: no such file (make guest builds it)" % args.rootfs)
    levels = [int(c) for c in comma_list(args.concurrency)]
    cold_levels = levels if args.cold_concurrency is None else \
        [int(c) for c in comma_list(args.cold_concurrency)]
    modes = comma_list(args.modes)
    if not modes or any(m not in MODES for m in modes):
        ap.error("--modes: expected a comma list of " + ", ".join(MODES))
    soak_modes = comma_list(args.soak_modes)
    if args.soak and (not soak_modes or any(m not in SERVE_MODES for m in soak_modes)):
        ap.error("--soak-modes: expected a comma list of " + ", ".join(SERVE_MODES))
    work = tempfile.mkdtemp(prefix="wisp-serve-bench-")
    report = {"benchmark": "serve", "environment": environment_name(), "modes": modes,
              "interleaved": True,
              "mem_mib": args.mem, "pool": args.pool, "warm": args.warm, "handler": handler_spec(args.handler, args.rootfs)["argv"],
              "results": {}, "ratios": {}, "out": args.out}
    rc = 0
    b = Bench(args, work)
    try:
        b.create_templates()
        if any(m.startswith("serve-") for m in modes) or args.soak:
            b.start_serve()
            if "serve-warm" in modes:
                b.wait_warm_ready()
        report["client"] = getattr(b, "client", None)
        for c in levels:
            calls = {mode: args.cold_calls if mode == "exec-cold" else args.calls
                     for mode in modes if mode != "exec-cold" or c in cold_levels}
            log("serve_bench: concurrency %d, interleaved: %s" % (
                c, ", ".join("%s %d calls" % mc for mc in calls.items())))
            for mode, lv in b.interleaved(calls, c).items():
                report["results"].setdefault(mode, []).append(lv)
        # Against invoke-process at the same concurrency (exec-cold may skip some levels).
        bases = {lv["concurrency"]: lv for lv in report["results"].get("invoke-process", [])}
        for mode in modes:
            for lv in report["results"].get(mode, []):
                base = bases.get(lv["concurrency"])
                if base:
                    report["ratios"].setdefault(mode, {})[str(lv["concurrency"])] = \
                        lv["p50_ms"] / base["p50_ms"]
        if args.paced_calls:
            paced = {m: args.paced_calls for m in modes if m != "exec-cold"}
            log("serve_bench: paced, %d calls per mode %d ms apart, interleaved" % (
                args.paced_calls, args.pace_ms))
            if paced:
                report["paced"] = b.interleaved(paced, 1, args.pace_ms)
            base = report.get("paced", {}).get("invoke-process")
            for mode, lv in report.get("paced", {}).items():
                if base:
                    report.setdefault("paced_ratios", {})[mode] = lv["p50_ms"] / base["p50_ms"]
        if args.soak:
            log("serve_bench: soak, %d invokes" % args.soak)
            report["soak"] = b.soak(args.soak, soak_modes)
            if not report["soak"]["flat"]:
                rc = 1
    except (BenchError, AssertionError, subprocess.TimeoutExpired, OSError) as e:
        log("serve_bench: %s" % e)
        report["error"] = str(e)[:3000]
        rc = 1
    finally:
        b.stop_serve()
        shutil.rmtree(work, ignore_errors=True)
    report.setdefault("client", getattr(b, "client", None))
    write_json(args.out, report)
    if rc == 0 or report["results"]:
        print_table(report)
        print_verdicts(report, os.path.basename(args.out))  # as perf/run-all.sh names it
    return rc


if __name__ == "__main__":
    sys.exit(main())
