#!/usr/bin/env python3
"""Snapshot create and restore time against guest memory size (128 MiB to 2 GiB by default).

Per size in --mems: one exec template (`cat`) made with the default options (`wisp template
create`: boot, warm-up, snapshot; its --timings snapshot_ms is the pause + save, create_wall_ms
the whole command), then --runs `wisp invoke --timings` of it (restore_ms: the clone's VMM
rebuilt; total_ms: request -> first result), then the template removed. A snapshot that saved
or restored the whole of guest memory would grow with the size; wisp's should not, past the
pages the guest touched.

Writes JSON (--out, "points": one per size) that perf/report.py plots; prints a table. Boots
guests: run it under tests/integration/in-kvm.
"""
import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot_bench import HANDLERS, PAYLOAD, wisp_template  # noqa: E402
from vmrun import environment_name, log, template_bench_workdir, summarize, write_json  # noqa: E402
from wisp_cli import BenchError, invoke  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mems", default="128,256,512,1024,2048", help="guest MiB, comma list")
    ap.add_argument("--runs", type=int, default=5, help="restores per size")
    ap.add_argument("--warmup", type=int, default=1, help="the template's warm-up calls")
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/agent-initramfs.cpio.gz"))
    ap.add_argument("--no-stage", action="store_true",
                    help="in the testbed, run wisp and the guest files from the checkout")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/memsize.json"))
    args = ap.parse_args()
    try:
        mems = [int(m) for m in args.mems.split(",") if m.strip()]
    except ValueError:
        ap.error(f"--mems {args.mems!r}: expected a comma list of MiB")
    if not mems or min(mems) < 64 or args.runs < 1:
        ap.error("--mems: each at least 64 MiB; --runs: at least 1")
    work = template_bench_workdir(args, "memsize_bench")
    if work is None:
        return 2
    tmp, env = work
    report = {"benchmark": "memsize", "environment": environment_name(), "mems": mems,
              "runs": args.runs, "handler": HANDLERS["exec"]["argv"], "kernel": args.kernel,
              "points": [], "out": args.out}
    log(f"memsize_bench: {mems} MiB, {args.runs} restores each, on {report['environment']}")
    rc = 0
    try:
        for mem in mems:
            args.mem = mem
            name = f"memsize-{mem}"
            t = wisp_template(args, env, name, HANDLERS["exec"])
            runs = [invoke(args.wisp, env, name, PAYLOAD, HANDLERS["exec"]["expect"])
                    for _ in range(args.runs)]
            subprocess.run([args.wisp, "template", "rm", name], env=env, capture_output=True)
            s = {k: summarize([r.get(k) for r in runs]) for k in ("restore_ms", "total_ms",
                                                                    "pages_touched")}
            point = {"mem_mib": mem, "create_ms": t["snapshot_ms"],
                     "create_wall_ms": t["create_wall_ms"],
                     "memory_disk_bytes": t["memory_disk_bytes"],
                     "restore_ms": (s["restore_ms"] or {}).get("median"),
                     "first_result_ms": (s["total_ms"] or {}).get("median"),
                     "summary": s, "samples": runs}
            report["points"].append(point)
            log(f"  {mem} MiB: snapshot {point['create_ms']} ms, restore {point['restore_ms']} "
                f"ms, first result {point['first_result_ms']} ms")
    except (BenchError, OSError, subprocess.TimeoutExpired) as e:
        log(f"memsize_bench: {e}")
        report["error"] = str(e)[:3000]
        rc = 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(args.out, report)

    def cell(v):
        return f"{v:>12.1f}" if isinstance(v, (int, float)) else f"{'-':>12}"
    print(f"\nsnapshot create and restore against guest memory on {report['environment']} "
          f"(medians of {args.runs} restores)")
    print(f"  {'MiB':>6} {'snapshot ms':>12} {'create ms':>12} {'restore ms':>12} "
          f"{'1st result':>12} {'on disk MiB':>12}")
    for p in report["points"]:
        disk = p["memory_disk_bytes"] / (1 << 20) if p["memory_disk_bytes"] else None
        print(f"  {p['mem_mib']:>6} {cell(p['create_ms'])} {cell(p['create_wall_ms'])} "
              f"{cell(p['restore_ms'])} {cell(p['first_result_ms'])} {cell(disk)}")
    print(f"  JSON: {args.out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
