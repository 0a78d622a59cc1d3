#!/usr/bin/env python3
"""Serverless-ML benchmark (issue 15 item 2): a real runtime's cold start against a restore.

The handler is guest/runtimes/ml_worker.py on the ML root filesystem (make ml-rootfs): at start
it imports numpy and scikit-learn and trains SGDClassifier (log loss, 100 000 x 50 float32
rows, 5 epochs); "the call" is one partial_fit on a minibatch of 1 000 rows that answers with
the updated coefficients (Cirrus-style). For one guest (--mem MiB, 1 vCPU), on one host:

  cold         `wisp exec --rootfs ML --mode worker` on a fresh boot: boot + imports + model
               set-up + the call, spawn -> result (exec_invoke_done_ms); the worker's own
               split of its start (import, data, fit) is read from its first call's stderr
  warm         `wisp invoke` of a template made from the warmed worker (`wisp template create`,
               its warm-up call exercising predict and partial_fit without changing the
               model): restore -> resumed -> the call (total_ms, and the whole process)
  QEMU         the same guest booted by QEMU microvm, warmed the same way, migrated to a file,
               restored from it (perf/snapshot_bench.py's QEMU path) -> the call

Runs are interleaved A/B: each round runs a warm restore and a QEMU restore, the order
alternating, and the cold starts are spread over the rounds, so drift on a noisy machine hits
all three. Every answer is checked: the coefficients must be finite and point along the
dataset's true rule (cosine > 0.9), all warm restores must answer the same bytes, and one
predict call on a warm clone must label held-out rows well (accuracy > 0.85).

Reported: medians, p90, p99, min-max, the ratio cold / warm against the goal (warm >= 100x
faster than cold), and QEMU / warm. JSON to --out with the environment (in the nested testbed,
times are emulator times: compare side by side). Run it inside tests/integration/in-kvm.
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snapshot_bench  # noqa: E402
from goals import print_verdicts  # noqa: E402
from vmrun import environment_name, json_lines, log, summarize, write_json  # noqa: E402
from wisp_cli import BenchError, check_result, run, template_create  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = ["/usr/bin/python3", "/usr/lib/wisp/ml_worker.py"]
FEATURES = 50
MINIBATCH = 1000  # the minibatch
HEADER = struct.Struct("<4sII")


# ---------------------------------------------------------------------------------- payloads

def true_weights():
    """ml_worker.true_weights(): the rule its training labels follow."""
    return [math.cos(0.7 * j) for j in range(FEATURES)], 0.25


def labelled_rows(n, seed, noise=0.5):
    """n rows of standard normal features (float32-rounded) and their labels by the rule."""
    rng = random.Random(seed)
    w, b = true_weights()
    rows, labels = [], []
    for _ in range(n):
        x = [struct.unpack("<f", struct.pack("<f", rng.gauss(0, 1)))[0] for _ in range(FEATURES)]
        rows.append(x)
        labels.append(1 if sum(a * c for a, c in zip(x, w)) + b + noise * rng.gauss(0, 1) > 0
                      else 0)
    return rows, labels


def request(op, rows, labels=None):
    body = b"".join(struct.pack(f"<{FEATURES}f", *r) for r in rows)
    return HEADER.pack(op, len(rows), FEATURES) + body + (bytes(labels) if labels else b"")


def parse_coefficients(what, out):
    """The coefficients and intercept of a "fit1" answer; BenchError unless well formed,
    finite and along the true rule."""
    want = 8 + 4 * (FEATURES + 1)
    if len(out) != want or out[:4] != b"coef" or struct.unpack_from("<I", out, 4)[0] != FEATURES:
        raise BenchError(f"{what}: not a coefficients answer ({len(out)} bytes, {out[:16]!r})")
    vals = struct.unpack_from(f"<{FEATURES + 1}f", out, 8)
    coef = vals[:FEATURES]
    if not all(math.isfinite(v) for v in vals):
        raise BenchError(f"{what}: a coefficient is not finite")
    w, _ = true_weights()
    cos = sum(a * c for a, c in zip(coef, w)) / (
        math.sqrt(sum(a * a for a in coef)) * math.sqrt(sum(c * c for c in w)) or 1)
    if cos < 0.9:
        raise BenchError(f"{what}: the coefficients do not follow the dataset's rule "
                         f"(cosine {cos:.3f} with the true weights, expected > 0.9)")
    return coef, vals[FEATURES], cos


# ------------------------------------------------------------------------------------- runs

def vm_args(args):
    return ["--mem", str(args.mem), "--vcpus", "1", "--kernel", args.kernel, "--rootfs",
            args.rootfs]


def worker_line(stderr, kind):
    """The worker's "ml_worker: KIND {json}" line (init: its start's split; call: the call's
    own time), or None."""
    head = f"ml_worker: {kind} "
    for line in stderr.splitlines():
        if line.startswith(head):
            try:
                return json.loads(line[len(head):])
            except ValueError:
                return None
    return None


def worker_init(stderr):
    return worker_line(stderr, "init")


def cold(args, payload):
    """`wisp exec` on a fresh boot: spawn -> the call's result, with the worker's start."""
    argv = [args.wisp, "exec", "--timings", "--timeout", str(args.call_timeout),
            "--boot-timeout", "300", *vm_args(args), "--mode", "worker", "--", *WORKER]
    t0 = time.monotonic()
    p = run(argv, payload, timeout=args.call_timeout + 600, what="cold wisp exec")
    wall = (time.monotonic() - t0) * 1000
    _, _, cos = parse_coefficients("cold wisp exec", p.stdout)
    err = p.stderr.decode(errors="replace")
    t = json_lines(err)
    return {"first_result_ms": t.get("exec_invoke_done_ms"), "wall_ms": wall,
            "agent_ready_ms": t.get("exec_agent_ready_ms"), "cosine": cos,
            "worker_init": worker_init(err),
            "worker_ms": (worker_line(err, "call") or {}).get("ms"), "out": p.stdout}


def warm(args, env, name, payload):
    """`wisp invoke` on a fresh clone of the template: restore -> the call's result."""
    argv = [args.wisp, "invoke", name, "--payload", "-", "--timings", "--timeout", "60"]
    t0 = time.monotonic()
    p = run(argv, payload, env=env, timeout=300, what="wisp invoke")
    wall = (time.monotonic() - t0) * 1000
    err = p.stderr.decode(errors="replace")
    t = json_lines(err)
    if "total_ms" not in t:
        raise BenchError("wisp invoke --timings printed no total_ms:\n" + err[-2000:])
    return dict(t, wall_ms=wall, worker_ms=(worker_line(err, "call") or {}).get("ms"),
                out=p.stdout)


def check_predict(args, env, name):
    """One predict call on a warm clone: the held-out rows' labels must mostly be right."""
    rows, labels = labelled_rows(MINIBATCH, seed=3)
    out = warm(args, env, name, request(b"pred", rows))["out"]
    if len(out) != 8 + MINIBATCH or out[:4] != b"pred":
        raise BenchError(f"predict: not a labels answer ({len(out)} bytes, {out[:16]!r})")
    acc = sum(1 for a, b in zip(out[8:], labels) if a == b) / MINIBATCH
    if acc < 0.85:
        raise BenchError(f"predict: accuracy {acc:.3f} on held-out rows, expected > 0.85")
    return acc


# handler_ms: the agent's time for the call; worker_ms: the worker's own (parse + model).
WARM_KEYS = ("total_ms", "restore_ms", "reconnect_ms", "invoke_ms", "handler_ms", "worker_ms",
             "pages_touched", "wall_ms")


def bench(args, tmp):
    fit_rows, fit_labels = labelled_rows(MINIBATCH, seed=1)
    warm_rows, warm_labels = labelled_rows(MINIBATCH, seed=2)
    fit_payload = request(b"fit1", fit_rows, fit_labels)
    warm_payload = request(b"warm", warm_rows, warm_labels)
    warm_file = os.path.join(tmp, "warmup.bin")
    with open(warm_file, "wb") as f:
        f.write(warm_payload)
    res = {"payload_bytes": len(fit_payload), "minibatch_rows": MINIBATCH}
    env = dict(os.environ, WISP_HOME=os.path.join(tmp, "wisp-home"))
    name = "mlbench"

    log(f"ml_bench: wisp template create {name} (boot, imports, training, warm-up, snapshot)")
    t = template_create(args.wisp, env, name, WORKER, "worker", args.warmup,
                        vm_args(args) + ["--warmup-payload", warm_file], timeout=1800)
    res["template"] = {"create_wall_ms": t["create_wall_ms"], **t["timings"]}
    res["predict_accuracy"] = check_predict(args, env, name)
    log(f"ml_bench: template made in {t['create_wall_ms'] / 1000:.1f} s; predict accuracy "
        f"on a warm clone {res['predict_accuracy']:.3f}")

    h = {"mode": "worker", "argv": WORKER, "rootfs": True, "expect": None,
         "warm_expect": b"warm\0\0\0\0",
         "check": lambda what, out: parse_coefficients(what, out)}
    qpath = os.path.join(tmp, "qemu-ml.mig")
    if not args.skip_qemu:
        log(f"ml_bench: QEMU: boot, warm up, stop, migrate to {qpath}")
        res["qemu_save"] = snapshot_bench.qemu_save(args, h, tmp, qpath, payload=warm_payload)

    warms, qemus, colds = [], [], []
    reference = None
    cold_at = {round(i * args.runs / args.cold_runs) for i in range(args.cold_runs)}
    for i in range(args.runs):
        order = ["warm", "qemu"] if i % 2 == 0 else ["qemu", "warm"]
        if i in cold_at:
            order.insert(i % 3, "cold")
        for kind in order:
            if kind == "warm":
                r = warm(args, env, name, fit_payload)
                out = r.pop("out")
                _, _, r["cosine"] = parse_coefficients("wisp invoke", out)
                # Every clone restores the same model: the same update, bit for bit.
                if reference is None:
                    reference = out
                check_result("wisp invoke (against the first clone's answer)", out, reference)
                warms.append(r)
            elif kind == "qemu" and not args.skip_qemu:
                qemus.append(snapshot_bench.qemu_restore(args, h, tmp, qpath, payload=fit_payload))
            elif kind == "cold":
                c = cold(args, fit_payload)
                c["same_answer_as_warm"] = None if reference is None else c["out"] == reference
                c.pop("out")
                colds.append(c)
                log(f"ml_bench: cold {len(colds)}/{args.cold_runs}: "
                    f"{c['first_result_ms'] / 1000:.1f} s; worker start {c['worker_init']}")
        log(f"ml_bench: round {i + 1}/{args.runs}: warm {warms[-1]['total_ms']:.1f} ms"
            + (f", QEMU {qemus[-1]['first_result_ms']:.1f} ms" if qemus else ""))
    if os.path.exists(qpath):
        os.unlink(qpath)
    subprocess.run([args.wisp, "template", "rm", name], env=env, capture_output=True)

    res["warm"] = {k: summarize([r.get(k) for r in warms]) for k in WARM_KEYS}
    res["warm_samples"] = warms
    res["cold"] = {k: summarize([c[k] for c in colds]) for k in
                   ("first_result_ms", "wall_ms", "agent_ready_ms", "worker_ms")}
    res["cold_worker_init"] = {k: summarize([(c["worker_init"] or {}).get(k) for c in colds])
                               for k in ("import_s", "data_s", "fit_s")}
    res["cold_samples"] = colds
    if qemus:
        res["qemu_restore"] = {k: summarize([q[k] for q in qemus]) for k in
                               ("first_result_ms", "running_ms", "connected_ms",
                                "agent_ready_ms", "wall_ms")}
        res["qemu_restore_samples"] = qemus

    def med(section, key):
        return ((res.get(section) or {}).get(key) or {}).get("median")

    def ratio(a, b):
        return a / b if a and b else None

    c, w, ww = med("cold", "first_result_ms"), med("warm", "total_ms"), med("warm", "wall_ms")
    res["ratios"] = {"cold_over_warm": ratio(c, w), "cold_over_warm_wall": ratio(c, ww),
                     "qemu_over_warm": ratio(med("qemu_restore", "first_result_ms"), w)}
    return res


def fmt(s, scale=1.0):
    if not s:
        return "-"
    return (f"{s['median'] * scale:10.1f} {s['p90'] * scale:10.1f} {s['p99'] * scale:10.1f} "
            f"{s['min'] * scale:10.1f} - {s['max'] * scale:.1f}")


def print_table(report):
    r = report["result"]
    print(f"\nserverless ML (SGDClassifier, log loss) on {report['environment']}")
    print(f"  {report['mem_mib']} MiB, 1 vCPU; {report['runs']} warm and QEMU restores, "
          f"{report['cold_runs']} cold starts, interleaved; the call: partial_fit on "
          f"{MINIBATCH} rows ({r['payload_bytes']} bytes)")
    print(f"    {'ms':34} {'median':>10} {'p90':>10} {'p99':>10} {'min - max':>12}")
    rows = [("cold: boot + start + call", r["cold"].get("first_result_ms")),
            ("  agent ready", r["cold"].get("agent_ready_ms")),
            ("  the call in the worker", r["cold"].get("worker_ms")),
            ("warm: restore -> result", r["warm"].get("total_ms")),
            ("  restore", r["warm"].get("restore_ms")),
            ("  reconnect", r["warm"].get("reconnect_ms")),
            ("  invoke", r["warm"].get("invoke_ms")),
            ("    agent's handler time", r["warm"].get("handler_ms")),
            ("    worker's own (parse + model)", r["warm"].get("worker_ms")),
            ("`wisp invoke` spawn -> exit", r["warm"].get("wall_ms")),
            ("QEMU restore -> result", (r.get("qemu_restore") or {}).get("first_result_ms"))]
    for label, s in rows:
        if s:
            print(f"    {label:34} {fmt(s)}")
    wi = r["cold_worker_init"]
    if wi.get("import_s"):
        print(f"    worker start inside a cold VM (median s): imports "
              f"{wi['import_s']['median']:.1f}, dataset {wi['data_s']['median']:.1f}, "
              f"5 epochs {wi['fit_s']['median']:.1f}")
    pt = r["warm"].get("pages_touched")
    if pt:
        print(f"    pages touched by a warm restore: median {pt['median']:.0f} "
              f"({pt['median'] * 4 / 1024:.1f} MiB)")
    ra = r["ratios"]
    print(f"    predict accuracy on a warm clone: {r['predict_accuracy']:.3f}")
    if ra["qemu_over_warm"]:
        print(f"    QEMU restore / wisp warm: {ra['qemu_over_warm']:.1f}x")
    if ra["cold_over_warm"]:
        print(f"    cold / warm: {ra['cold_over_warm']:.1f}x; against `wisp invoke`'s whole "
              f"process: {ra['cold_over_warm_wall'] or 0:.1f}x")
    print_verdicts(report, "ml_bench.json")  # issue 15's goal, from perf/goals.json
    print(f"\n  JSON: {report['out']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="rounds: a warm and a QEMU restore each")
    ap.add_argument("--cold-runs", type=int, default=3, help="cold starts, spread over the rounds")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up calls before each snapshot")
    ap.add_argument("--mem", type=int, default=512, help="guest MiB")
    ap.add_argument("--call-timeout", type=int, default=900,
                    help="seconds for a call that includes the worker's start (cold, QEMU's "
                         "warm-up): under the testbed's emulator training takes minutes")
    ap.add_argument("--skip-qemu", action="store_true")
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--qemu-cid", type=int, default=43, help="guest CID of the QEMU VMs")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build/guest/ml-rootfs.ext4"))
    ap.add_argument("--tmp", help="work directory (default: a new one in TMPDIR)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/ml_bench.json"))
    ap.add_argument("--no-stage", action="store_true",
                    help="in the testbed, run wisp and the guest files from the checkout")
    args = ap.parse_args()
    # snapshot_bench's staging copies an initrd too; this guest boots its rootfs instead.
    args.initrd = os.path.join(os.path.dirname(args.kernel), "agent-initramfs.cpio.gz")
    if args.runs < 1 or not 1 <= args.cold_runs <= args.runs:
        log("ml_bench: --runs must be >= 1 and --cold-runs 1 to --runs")
        return 2
    for path, what in ((args.wisp, "wisp (make)"), (args.kernel, "guest kernel (make guest)"),
                       (args.rootfs, "ML root filesystem (make ml-rootfs)")):
        if not os.path.exists(path):
            log(f"ml_bench: {path} is missing: build the {what}")
            return 2
    if not args.skip_qemu and not (shutil.which(args.qemu) and os.path.exists("/dev/vhost-vsock")):
        log(f"ml_bench: {args.qemu} or /dev/vhost-vsock is missing: pass --skip-qemu")
        return 2
    env_name = environment_name()
    report = {"benchmark": "ml", "environment": env_name, "mem_mib": args.mem, "vcpus": 1,
              "runs": args.runs, "cold_runs": args.cold_runs, "warmup": args.warmup,
              "handler": " ".join(WORKER), "kernel": args.kernel, "rootfs": args.rootfs,
              "rootfs_bytes": os.path.getsize(args.rootfs), "out": args.out}
    log(f"ml_bench: {args.runs} warm/QEMU rounds, {args.cold_runs} cold starts, {args.mem} MiB, "
        f"on {env_name}")
    tmp = args.tmp or tempfile.mkdtemp(prefix="wisp-ml-bench-")
    os.makedirs(tmp, exist_ok=True)
    try:
        if os.environ.get("WISP_TESTBED") and not args.no_stage:
            snapshot_bench.stage_files(args, tmp)
            report["staged"] = tmp
        report["result"] = bench(args, tmp)
    except (BenchError, subprocess.TimeoutExpired) as e:
        log(f"ml_bench: {e}")
        report["error"] = str(e)[:2000]
        write_json(args.out, report)
        return 1
    finally:
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    write_json(args.out, report)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
