#!/usr/bin/env python3
"""CRIU fallback benchmark (issue 17 item 5): what a worker costs to start when its template's VM
snapshot does not fit the host, against re-initialising it and against the VM snapshot.

For each workload (the Python worker, guest/runtimes/python_worker.py on the Python rootfs; the
ML worker of issue 15, guest/runtimes/ml_worker.py on the ML rootfs, whose start imports numpy
and scikit-learn and trains a model), one template is made with a CRIU image of its warm worker
(`wisp template create --mode worker`), then, interleaved in rounds (the order turned round each
round, so drift on a noisy machine hits every mode):

  cold       `wisp exec --rootfs R --mode worker`: boot + the worker's initialisation + the call
             (spawn -> result, exec_invoke_done_ms): what a host without a usable snapshot and
             without a CRIU image pays
  criu       `wisp invoke` with the template's memory file moved aside (renamed back after), so
             the snapshot does not fit: boot cold + CRIU restore of the worker from the image's
             read-only drive (criu_source "drive") + the call (total_ms; boot_ms,
             criu_restore_ms, criu_mount_ms, criu_guest_ms of it). WISP_NO_SNAPSHOT_REMAKE=1:
             no background re-make between the rounds
  upload     (--upload) the same with WISP_CRIU_NO_DRIVE=1: the image sent to the agent over
             vsock and unpacked there (criu_source "upload"; criu_upload_ms, criu_unpack_ms), as
             for a template whose agent predates the drive
  snapshot   `wisp invoke` of the intact template: VM snapshot restore + the call (total_ms)

Every answer is checked (the Python worker upper-cases its payload; the ML worker's coefficients
follow the dataset's rule, perf/ml_bench.py). Reported: medians, p90, min-max, the ratios
cold / criu (goal: >= 5x for the ML worker) and criu / snapshot; JSON to --out. Run it inside
tests/integration/in-kvm (times are emulator times there: compare side by side).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ml_bench  # noqa: E402
from goals import print_verdicts  # noqa: E402
from vmrun import environment_name, json_lines, log, stage, summarize, write_json  # noqa: E402
from wisp_cli import BenchError, check_result, run, template_create  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY_PAYLOAD = b"hello criu\n"
MODES = ("cold", "criu", "upload", "snapshot")


def workloads(args):
    """name -> rootfs, worker argv, payload, answer check, warm-up payload, memory MiB."""
    fit_rows, fit_labels = ml_bench.labelled_rows(ml_bench.MINIBATCH, seed=1)
    warm_rows, warm_labels = ml_bench.labelled_rows(ml_bench.MINIBATCH, seed=2)
    return {
        "python": {"rootfs": args.rootfs, "argv": ["/usr/bin/python3",
                                                   "/usr/lib/wisp/python_worker.py"],
                   "payload": PY_PAYLOAD, "warmup_payload": PY_PAYLOAD, "mem": 256,
                   "check": lambda what, out: check_result(what, out, PY_PAYLOAD.upper())},
        "ml": {"rootfs": args.ml_rootfs, "argv": ml_bench.WORKER,
               "payload": ml_bench.request(b"fit1", fit_rows, fit_labels),
               "warmup_payload": ml_bench.request(b"warm", warm_rows, warm_labels),
               "mem": args.ml_mem,
               "check": lambda what, out: ml_bench.parse_coefficients(what, out)},
    }


def vm_args(args, w):
    return ["--mem", str(w["mem"]), "--vcpus", "1", "--kernel", args.kernel,
            "--rootfs", w["rootfs"]]


def cold(args, w):
    argv = [args.wisp, "exec", "--timings", "--timeout", str(args.call_timeout),
            "--boot-timeout", "300", *vm_args(args, w), "--mode", "worker", "--", *w["argv"]]
    t0 = time.monotonic()
    p = run(argv, w["payload"], timeout=args.call_timeout + 600, what="cold wisp exec")
    wall = (time.monotonic() - t0) * 1000
    w["check"]("cold wisp exec", p.stdout)
    t = json_lines(p.stderr.decode(errors="replace"))
    # boot_ms: until its agent was ready, as the fallback's boot_ms (both count from the
    # command's start), so the two boots sit side by side.
    return {"total_ms": t.get("exec_invoke_done_ms"), "boot_ms": t.get("exec_agent_ready_ms"),
            "wall_ms": wall}


def invoke(args, env, name, w, expect_fallback, source=None):
    argv = [args.wisp, "invoke", name, "--payload", "-", "--timings", "--timeout",
            str(args.call_timeout)]
    t0 = time.monotonic()
    p = run(argv, w["payload"], env=env, timeout=args.call_timeout + 600, what="wisp invoke")
    wall = (time.monotonic() - t0) * 1000
    err = p.stderr.decode(errors="replace")
    w["check"]("wisp invoke", p.stdout)
    t = json_lines(err)
    if bool(t.get("criu_fallback")) != expect_fallback:
        raise BenchError(f"wisp invoke {'did not fall' if expect_fallback else 'fell'} back to "
                         f"the CRIU image:\n{err[-2000:]}")
    if source and t.get("criu_source") != source:
        raise BenchError(f"wisp invoke restored from {t.get('criu_source')!r}, not {source!r}:"
                         f"\n{err[-2000:]}")
    return dict(t, wall_ms=wall)


KEYS = ("total_ms", "wall_ms", "restore_ms", "boot_ms", "criu_drive_ms", "criu_restore_ms",
        "criu_mount_ms", "criu_upload_ms", "criu_unpack_ms", "criu_guest_ms", "invoke_ms")


def bench_workload(args, env, tmp, wname, w):
    name = "criu-" + wname
    warm_file = os.path.join(tmp, wname + "-warmup.bin")
    with open(warm_file, "wb") as f:
        f.write(w["warmup_payload"])
    log(f"criu_bench: {wname}: wisp template create {name} (boot, init, warm-up, CRIU dump, "
        f"snapshot)")
    t = template_create(args.wisp, env, name, w["argv"], "worker", 1,
                        vm_args(args, w) + ["--warmup-payload", warm_file],
                        timeout=3600)
    snap = os.path.join(env["WISP_HOME"], "templates", name, "snapshot")
    image = os.path.join(snap, "criu-image.wci")
    if not os.path.exists(image):
        raise BenchError(f"{wname}: the template has no CRIU image (the guest could not dump "
                         f"the worker: see `wisp template create`'s log)")
    drive = os.path.join(snap, "criu-image.ext4")
    if not os.path.exists(drive):
        raise BenchError(f"{wname}: the template has no CRIU image drive (see `wisp template "
                         f"create`'s log)")
    res = {"template": {"create_wall_ms": t["create_wall_ms"], **t["timings"]},
           "criu_image_bytes": os.path.getsize(image),
           "criu_drive_bytes": os.path.getsize(drive)}
    memory, aside = os.path.join(snap, "memory"), os.path.join(snap, "memory.aside")
    samples = {m: [] for m in MODES}
    cold_at = {round(i * args.runs / args.cold_runs) for i in range(args.cold_runs)}
    upload_env = dict(env, WISP_CRIU_NO_DRIVE="1")
    for i in range(args.runs):
        order = ["criu", "snapshot"] if i % 2 == 0 else ["snapshot", "criu"]
        if args.upload:
            order.insert(1, "upload")
        if i in cold_at:
            order.insert(i % 3, "cold")
        for mode in order:
            if mode == "cold":
                samples["cold"].append(cold(args, w))
            elif mode == "snapshot":
                samples["snapshot"].append(invoke(args, env, name, w, False))
            else:
                os.rename(memory, aside)
                try:
                    if mode == "criu":
                        samples[mode].append(invoke(args, env, name, w, True, "drive"))
                    else:
                        samples[mode].append(invoke(args, upload_env, name, w, True, "upload"))
                finally:
                    os.rename(aside, memory)
        log(f"criu_bench: {wname} round {i + 1}/{args.runs}: " + ", ".join(
            f"{m} {samples[m][-1]['total_ms'] / 1000:.2f} s" for m in order))
    subprocess.run([args.wisp, "template", "rm", name], env=env, capture_output=True)
    for m in MODES:
        if not samples[m]:
            continue
        res[m] = {k: summarize([s.get(k) for s in samples[m]]) for k in KEYS}
        res[m + "_samples"] = samples[m]

    def med(m):
        return (((res.get(m) or {}).get("total_ms") or {}).get("median"))

    res["ratios"] = {
        "cold_over_criu": med("cold") / med("criu") if med("cold") and med("criu") else None,
        "cold_over_upload":
            med("cold") / med("upload") if med("cold") and med("upload") else None,
        "criu_over_snapshot":
            med("criu") / med("snapshot") if med("criu") and med("snapshot") else None}
    return res


def fmt(s):
    if not s:
        return "-"
    return (f"{s['median'] / 1000:9.2f} {s['p90'] / 1000:9.2f} "
            f"{s['min'] / 1000:9.2f} - {s['max'] / 1000:.2f}")


def print_table(report):
    print(f"\nCRIU fallback on {report['environment']}: {report['runs']} rounds, "
          f"{report['cold_runs']} cold starts, interleaved; 1 vCPU")
    print(f"    {'s':44} {'median':>9} {'p90':>9} {'min - max':>12}")
    for wname, r in report["result"].items():
        print(f"  {wname} worker (CRIU image {r['criu_image_bytes'] / 2**20:.1f} MiB, its drive "
              f"{r['criu_drive_bytes'] / 2**20:.1f} MiB)")
        rows = [("cold boot + init + call", r["cold"]["total_ms"]),
                ("  boot (until the agent is ready)", r["cold"].get("boot_ms")),
                ("cold boot + CRIU restore (drive) + call", r["criu"]["total_ms"]),
                ("  boot", r["criu"]["boot_ms"]),
                ("  CRIU restore (mount, criu)", r["criu"]["criu_restore_ms"]),
                ("    the drive's mount in the guest", r["criu"].get("criu_mount_ms")),
                ("    criu restore in the guest", r["criu"]["criu_guest_ms"]),
                ("  the call", r["criu"]["invoke_ms"])]
        if r.get("upload"):
            rows += [("cold boot + CRIU restore (upload) + call", r["upload"]["total_ms"]),
                     ("  boot", r["upload"]["boot_ms"]),
                     ("  CRIU restore (transfer, unpack, criu)", r["upload"]["criu_restore_ms"]),
                     ("    the image's transfer", r["upload"].get("criu_upload_ms")),
                     ("    the agent's unpacking", r["upload"].get("criu_unpack_ms")),
                     ("    criu restore in the guest", r["upload"]["criu_guest_ms"]),
                     ("  the call", r["upload"]["invoke_ms"])]
        rows += [("VM snapshot restore + call", r["snapshot"]["total_ms"])]
        for label, s in rows:
            print(f"    {label:44} {fmt(s)}")
        ra = r["ratios"]
        if ra["cold_over_criu"]:
            print(f"    cold / CRIU fallback: {ra['cold_over_criu']:.1f}x; CRIU fallback / "
                  f"VM snapshot: {ra['criu_over_snapshot'] or 0:.1f}x")
        if ra.get("cold_over_upload"):
            print(f"    cold / CRIU fallback by upload: {ra['cold_over_upload']:.1f}x")
    print_verdicts(report, "criu.json")
    print(f"\n  JSON: {report['out']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="rounds: a CRIU fallback and a VM "
                    "snapshot restore each")
    ap.add_argument("--cold-runs", type=int, default=3, help="cold starts, spread over the rounds")
    ap.add_argument("--workloads", default="python,ml", help="comma list of: python, ml")
    ap.add_argument("--upload", action="store_true",
                    help="also time the fallback that sends the image (no drive) each round")
    ap.add_argument("--ml-mem", type=int, default=512, help="the ML guest's MiB")
    ap.add_argument("--call-timeout", type=int, default=900,
                    help="seconds for a call that includes the worker's start (cold ML)")
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build/guest/python-rootfs.ext4"))
    ap.add_argument("--ml-rootfs", default=os.path.join(ROOT, "build/guest/ml-rootfs.ext4"))
    ap.add_argument("--tmp", help="work directory (default: a new one in TMPDIR)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/criu.json"))
    ap.add_argument("--no-stage", action="store_true",
                    help="in the testbed, run wisp and the guest files from the checkout")
    args = ap.parse_args()
    names = [n for n in args.workloads.split(",") if n]
    if not names or any(n not in ("python", "ml") for n in names):
        log("criu_bench: --workloads: a comma list of python, ml")
        return 2
    if args.runs < 1 or not 1 <= args.cold_runs <= args.runs:
        log("criu_bench: --runs must be >= 1 and --cold-runs 1 to --runs")
        return 2
    needed = [(args.wisp, "wisp (make)"), (args.kernel, "guest kernel (make guest)")]
    if "python" in names:
        needed.append((args.rootfs, "Python root filesystem (make rootfs)"))
    if "ml" in names:
        needed.append((args.ml_rootfs, "ML root filesystem (make ml-rootfs)"))
    for path, what in needed:
        if not os.path.exists(path):
            log(f"criu_bench: {path} is missing: build the {what}")
            return 2
    env_name = environment_name()
    report = {"benchmark": "criu", "environment": env_name, "runs": args.runs,
              "cold_runs": args.cold_runs, "workloads": names, "kernel": args.kernel,
              "out": args.out, "result": {}}
    tmp = args.tmp or tempfile.mkdtemp(prefix="wisp-criu-bench-")
    os.makedirs(tmp, exist_ok=True)
    # Until template create checkpoints workers by default (issue 17's guest side); no
    # background re-make of the snapshot the fallback rounds find unusable.
    env = dict(os.environ, WISP_HOME=os.path.join(tmp, "wisp-home"), WISP_EXPERIMENTAL_CRIU="1",
               WISP_NO_SNAPSHOT_REMAKE="1")
    try:
        if os.environ.get("WISP_TESTBED") and not args.no_stage:
            # Off the testbed's 9p share: wisp and the guest files the workloads boot.
            files = [args.kernel] + [args.rootfs if n == "python" else args.ml_rootfs
                                     for n in names]
            bin_dir = stage(os.path.dirname(os.path.abspath(args.wisp)), files, tmp)
            args.wisp = os.path.join(bin_dir, os.path.basename(args.wisp))
            guest = os.path.join(tmp, "guest")
            args.kernel = os.path.join(guest, os.path.basename(args.kernel))
            args.rootfs = os.path.join(guest, os.path.basename(args.rootfs))
            args.ml_rootfs = os.path.join(guest, os.path.basename(args.ml_rootfs))
            report["staged"] = tmp
        ws = workloads(args)
        for n in names:
            report["result"][n] = bench_workload(args, env, tmp, n, ws[n])
    except (BenchError, subprocess.TimeoutExpired) as e:
        log(f"criu_bench: {e}")
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
