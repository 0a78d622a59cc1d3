#!/usr/bin/env python3
"""Density: summed PSS and host memory against the number of live clones of one template.

One exec template (`cat`, 256 MiB by default, made with the default options: warm, with its
working set), then clones of it restored and kept alive one after another (`wisp snapshot
restore`, each answering one call through `wisp exec --attach --resumed` before it counts).
At each step of --steps (live clones: 1, 10, 25, 50, 100 by default) the clones' summed RSS
and PSS (each VMM's process tree, smaps_rollup) and the host's used memory (MemTotal -
MemAvailable) less its value before the first clone. PSS shares each clean page of the
template's memory file among the clones that map it, so its sum growing far slower than
N x one clone's RSS is the density the snapshot design is for (issues 5, 13, 15).

Writes JSON (--out, "points": one per step) that perf/report.py plots; prints a table. Boots
guests: run it under tests/integration/in-kvm (the testbed's 4 GiB hold 100 clones of 256 MiB,
each mapping only the pages it touched).
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot_bench import HANDLERS, PAYLOAD, memory_of, wisp_template  # noqa: E402
from vmrun import environment_name, log, template_bench_workdir, write_json  # noqa: E402
from wisp_cli import BenchError, check_result, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = "density-bench"


def host_used_kib():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, val = line.partition(":")
            info[key] = int(val.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


def start_clone(args, env, tdir, tmp, i):
    """Restores clone i and makes one call through it; returns its VMM process."""
    sock = os.path.join(tmp, f"clone{i}.sock")
    p = subprocess.Popen([args.wisp, "snapshot", "restore", tdir, "--vsock-uds", sock,
                          "--console", "none"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        r = run([args.wisp, "exec", "--attach", sock, "--resumed", "--boot-timeout", "120",
                 "--", *HANDLERS["exec"]["argv"]], PAYLOAD, timeout=300, env=env,
                what=f"clone {i}: wisp exec --attach")
        check_result(f"clone {i}", r.stdout, HANDLERS["exec"]["expect"])
    except BenchError:
        if p.poll() is not None:
            raise BenchError(f"clone {i} (wisp snapshot restore) exited with rc {p.returncode}: "
                             f"{p.stderr.read().decode(errors='replace')[-2000:]}")
        p.kill()
        p.wait()
        raise
    return p


def measure(clones, base_used):
    mem = [memory_of(p.pid) for p in clones]
    rss = sorted(m["Rss"] for m in mem)
    return {"clones": len(clones), "sum_rss_kib": sum(rss),
            "sum_pss_kib": sum(m["Pss"] for m in mem), "median_rss_kib": rss[len(rss) // 2],
            "host_used_kib": host_used_kib() - base_used}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1,10,25,50,100",
                    help="live clone counts at which memory is measured (increasing)")
    ap.add_argument("--mem", type=int, default=256, help="the template's guest MiB")
    ap.add_argument("--warmup", type=int, default=1, help="the template's warm-up calls")
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/agent-initramfs.cpio.gz"))
    ap.add_argument("--no-stage", action="store_true",
                    help="in the testbed, run wisp and the guest files from the checkout")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/density.json"))
    args = ap.parse_args()
    try:
        steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    except ValueError:
        ap.error(f"--steps {args.steps!r}: expected a comma list of clone counts")
    if not steps or steps[0] < 1:
        ap.error("--steps: clone counts must be at least 1")
    work = template_bench_workdir(args, "density_bench")
    if work is None:
        return 2
    tmp, env = work
    report = {"benchmark": "density", "environment": environment_name(), "mem_mib": args.mem,
              "handler": HANDLERS["exec"]["argv"], "steps": steps, "kernel": args.kernel,
              "points": [], "out": args.out}
    log(f"density_bench: clones of one {args.mem} MiB exec template, measured at {steps}, on "
        f"{report['environment']}")
    clones, rc = [], 0
    try:
        report["template"] = wisp_template(args, env, TEMPLATE, HANDLERS["exec"])
        tdir = report["template"]["dir"]
        if not tdir:
            raise BenchError(f"cannot find template {TEMPLATE}'s snapshot under {env['WISP_HOME']}")
        time.sleep(1)
        base = host_used_kib()
        t0 = time.monotonic()
        for n in steps:
            while len(clones) < n:
                clones.append(start_clone(args, env, tdir, tmp, len(clones)))
            time.sleep(0.5)
            point = measure(clones, base)
            point["elapsed_s"] = time.monotonic() - t0
            report["points"].append(point)
            log(f"  {n} clones: sum PSS {point['sum_pss_kib'] / 1024:.1f} MiB, sum RSS "
                f"{point['sum_rss_kib'] / 1024:.1f} MiB, host +{point['host_used_kib'] / 1024:.1f}"
                f" MiB")
    except (BenchError, OSError, subprocess.TimeoutExpired) as e:
        log(f"density_bench: {e}")
        report["error"] = str(e)[:3000]
        rc = 1
    finally:
        for p in clones:
            p.kill()
        for p in clones:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(args.out, report)
    print(f"\ndensity: live clones of one {args.mem} MiB exec template on "
          f"{report['environment']}")
    print(f"  {'clones':>6} {'sum PSS MiB':>12} {'sum RSS MiB':>12} {'PSS/(N x one)':>14} "
          f"{'host +MiB':>10}")
    for p in report["points"]:
        one = p["median_rss_kib"] * p["clones"]
        print(f"  {p['clones']:>6} {p['sum_pss_kib'] / 1024:>12.1f} "
              f"{p['sum_rss_kib'] / 1024:>12.1f} {p['sum_pss_kib'] / one if one else 0:>14.2f} "
              f"{p['host_used_kib'] / 1024:>10.1f}")
    print(f"  JSON: {args.out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
