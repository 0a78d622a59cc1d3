#!/usr/bin/env python3
"""A/B benchmark: two wisp builds measured side by side, interleaved, on one host in one run.

For a change that must leave the figures alone ("within 10 %"): build A (e.g. the parent
commit) and build B (the change) each boot the default guest and restore clones of a template
each creates itself, in the order A, B, A, B, ... so that drift of the host (other load, a
warming cache, the testbed's emulator) falls on both alike. Per build and run:

  boot      `wisp run` of the default guest: spawn -> its init's marker line, as
            perf/boot_bench.py measures wisp (also: spawn -> exit, first KVM_RUN)
  restore   `wisp invoke --timings` restore_ms: start until the clone's VMM is rebuilt
  invoke    `wisp invoke --timings` total_ms (start -> result) and the whole `wisp invoke`
            process's wall time, spawn -> exit

A build root is a directory with bin/wisp (and whatever wisp runs beside itself: wisp-vmm,
wisp-agent) and guest/ (vmlinux, initramfs.cpio.gz, agent-initramfs.cpio.gz), as `make` leaves
build/. Without its own guest/, --guest names a shared one; a root with bin/wisp-agent then
gets its own agent initramfs (guest/build-agent-initramfs.sh), so each build runs its own
agent. Each build has its own WISP_HOME in a temp dir. Only public commands are used (wisp run,
wisp template create, wisp invoke --timings), so the builds' internals may differ.

Writes JSON (every sample, the summaries, B/A ratios of the medians) and prints a table.
Guests must boot: run it where they can, e.g.
  tests/integration/in-kvm perf/ab_bench.py --a ../parent/build --b build --runs 10
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot_bench import HANDLERS, PAYLOAD  # noqa: E402
from vmrun import environment_name, log, stage, summarize, write_json  # noqa: E402
from wisp_cli import BenchError, boot, boot_argv, invoke, template_create  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = "ab-bench"

# (key in a sample, label): the figures the A/B check compares.
METRICS = [("boot_ms", "boot: spawn -> init"),
           ("restore_ms", "restore: restore_ms"),
           ("invoke_total_ms", "invoke: total_ms"),
           ("invoke_wall_ms", "invoke: process spawn -> exit")]
# Recorded and summarized, not judged.
EXTRA_METRICS = ["boot_exit_ms", "first_kvm_run_ms", "reconnect_ms", "invoke_ms",
                 "pages_touched"]


class Build:
    """One build root: where its binaries and guest files are, and its own WISP_HOME."""

    def __init__(self, name, root, shared_guest, handler, work):
        self.name, self.root = name, os.path.abspath(root)
        self.work = os.path.join(work, name)
        self.bin_dir = os.path.join(self.root, "bin")
        self.wisp = os.path.join(self.bin_dir, "wisp")
        if not os.access(self.wisp, os.X_OK):
            raise BenchError(f"build {name}: {self.wisp} is missing (build it: make wisp)")
        own = os.path.join(self.root, "guest")
        guest = own if os.path.isfile(os.path.join(own, "vmlinux")) else shared_guest
        if not guest:
            raise BenchError(f"build {name}: {own}/vmlinux is missing; pass --guest DIR")
        self.kernel = os.path.join(guest, "vmlinux")
        self.initrd = os.path.join(guest, "initramfs.cpio.gz")
        self.agent_initrd = os.path.join(guest, "agent-initramfs.cpio.gz")
        self.rootfs = os.path.join(guest, "python-rootfs.ext4") if handler["rootfs"] else None
        os.makedirs(self.work, exist_ok=True)
        agent = os.path.join(self.bin_dir, "wisp-agent")
        if guest != own and os.path.isfile(agent):
            self.agent_initrd = build_agent_initrd(agent, self.work)
        for path in (self.kernel, self.initrd, self.agent_initrd, self.rootfs):
            if path and not os.path.isfile(path):
                raise BenchError(f"build {name}: {path} is missing (make guest agent-guest)")
        self.env = dict(os.environ, WISP_HOME=os.path.join(self.work, "home"))
        self.boot_argv = None  # set once the paths are final (after stage())

    def stage(self):
        """Copies the binaries and guest files into this build's work dir (vmrun.stage)."""
        files = [self.kernel, self.initrd, self.agent_initrd, self.rootfs]
        self.wisp = os.path.join(stage(self.bin_dir, files, self.work), "wisp")
        guest = os.path.join(self.work, "guest")
        self.kernel, self.initrd, self.agent_initrd = (
            os.path.join(guest, os.path.basename(p))
            for p in (self.kernel, self.initrd, self.agent_initrd))
        if self.rootfs:
            self.rootfs = os.path.join(guest, os.path.basename(self.rootfs))

    def describe(self):
        p = subprocess.run([self.wisp, "--version"], capture_output=True, text=True)
        return {"root": self.root, "wisp": self.wisp, "version": p.stdout.strip() or None,
                "kernel": self.kernel, "initrd": self.initrd, "agent_initrd": self.agent_initrd,
                "rootfs": self.rootfs, "boot_argv": self.boot_argv}

    def vm_args(self, mem):
        disk = ["--rootfs", self.rootfs] if self.rootfs else ["--initrd", self.agent_initrd]
        return ["--mem", str(mem), "--vcpus", "1", "--kernel", self.kernel, *disk]


def build_agent_initrd(agent, work):
    out = os.path.join(work, "agent-initramfs.cpio.gz")
    log(f"ab_bench: building {out} around {agent}")
    p = subprocess.run([os.path.join(ROOT, "guest/build-agent-initramfs.sh"), out,
                        "--agent", agent], capture_output=True, text=True)
    if p.returncode != 0:
        raise BenchError(f"guest/build-agent-initramfs.sh --agent {agent} failed:\n"
                         f"{p.stderr[-2000:]}")
    return out


def measure_boot(b):
    s = boot(b.boot_argv, f"build {b.name}")
    return {"boot_ms": s["marker_ms"], "boot_exit_ms": s["exit_ms"],
            "first_kvm_run_ms": s["first_kvm_run_ms"]}


def measure_invoke(b, handler):
    t = invoke(b.wisp, b.env, TEMPLATE, PAYLOAD, handler["expect"])
    return {"restore_ms": t.get("restore_ms"), "invoke_total_ms": t["total_ms"],
            "invoke_wall_ms": t["wall_ms"], "reconnect_ms": t.get("reconnect_ms"),
            "invoke_ms": t.get("invoke_ms"), "pages_touched": t.get("pages_touched")}


def interleave(builds, args, handler, samples):
    """Warm-up rounds (not kept), then --runs rounds of boot and invoke, A then B in each
    (--order abba: B then A in every other round, so a steady drift favours neither)."""
    for i in range(-args.warmup_runs, args.runs):
        order = builds[::-1] if args.order == "abba" and i % 2 else builds
        for step in (measure_boot, lambda b: measure_invoke(b, handler)):
            for b in order:
                row = step(b)
                if i >= 0:
                    samples[b.name][i].update(row)
        if i >= 0:
            log(f"  run {i + 1}/{args.runs}: " + ", ".join(
                f"{b.name} boot {samples[b.name][i]['boot_ms']:.0f} ms, invoke "
                f"{samples[b.name][i]['invoke_total_ms']:.1f} ms" for b in builds))


def summarize_ab(samples, tolerance):
    out = {}
    for key in [m for m, _ in METRICS] + EXTRA_METRICS:
        a = summarize([s.get(key) for s in samples["A"]])
        b = summarize([s.get(key) for s in samples["B"]])
        ratio = b["median"] / a["median"] if a and b and a["median"] else None
        out[key] = {"A": a, "B": b, "ratio_b_over_a": ratio}
        if key in dict(METRICS):
            out[key]["within_tolerance"] = None if ratio is None else abs(ratio - 1) <= tolerance
    return out


def print_table(report):
    tol = report["tolerance"]
    print(f"\nA/B on {report['environment']}: median (p90) of {report['runs']} interleaved runs "
          f"each; handler {report['handler']}")
    for name in ("A", "B"):
        print(f"  {name}: {report['builds'][name]['root']}")
    print(f"  {'ms':30} {'A':>18} {'B':>18} {'B/A':>7}")

    def cell(s):
        return f"{s['median']:9.1f} ({s['p90']:6.1f})" if s else f"{'-':>18}"
    outside = []
    for key, label in METRICS:
        row = report["summary"][key]
        ratio = row["ratio_b_over_a"]
        verdict = {True: "ok", False: f"OUTSIDE {tol:.0%}", None: ""}[row["within_tolerance"]]
        if row["within_tolerance"] is False:
            outside.append(label)
        print(f"  {label:30} {cell(row['A']):>18} {cell(row['B']):>18} "
              f"{(f'{ratio:.3f}' if ratio else '-'):>7}  {verdict}")
    print(f"  B/A of the medians: {'all within' if not outside else 'NOT all within'} "
          f"{tol:.0%}" + (f" ({', '.join(outside)})" if outside else ""))
    print(f"  JSON: {report['out']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="build root A (the reference, e.g. the parent)")
    ap.add_argument("--b", required=True, help="build root B (the change)")
    ap.add_argument("--guest", help="guest dir for a build root without its own guest/")
    ap.add_argument("--runs", type=int, default=10, help="interleaved runs per build")
    ap.add_argument("--warmup-runs", type=int, default=1, help="rounds run first, not kept")
    ap.add_argument("--order", choices=("ab", "abba"), default="ab",
                    help="ab: A then B in every round; abba: the order flips every round")
    ap.add_argument("--handler", default="exec", choices=sorted(HANDLERS),
                    help="the template's handler (snapshot_bench's)")
    ap.add_argument("--warmup", type=int, default=2, help="template warm-up calls")
    ap.add_argument("--mem", type=int, default=256, help="template guest MiB")
    ap.add_argument("--boot-mem", type=int, default=128, help="boot guest MiB (boot_bench's)")
    ap.add_argument("--tolerance", type=float, default=0.10, help="allowed |B/A - 1|")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/ab.json"))
    ap.add_argument("--no-stage", action="store_true",
                    help="in the testbed, run the builds from where they are (9p)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    handler = HANDLERS[args.handler]
    env = environment_name()
    work = tempfile.mkdtemp(prefix="wisp-ab-bench-")
    report = {"benchmark": "ab", "environment": env, "runs": args.runs,
              "warmup_runs": args.warmup_runs, "handler": args.handler,
              "boot_mem_mib": args.boot_mem, "template_mem_mib": args.mem,
              "tolerance": args.tolerance, "out": args.out, "order": args.order}
    samples = {"A": [{} for _ in range(args.runs)], "B": [{} for _ in range(args.runs)]}
    rc = 0
    try:
        builds = [Build(n, r, args.guest, handler, work) for n, r in (("A", args.a), ("B", args.b))]
        if os.environ.get("WISP_TESTBED") and not args.no_stage:
            for b in builds:
                b.stage()
        for b in builds:
            b.boot_argv = boot_argv(b.wisp, b.kernel, b.initrd, args.boot_mem)
        report["builds"] = {b.name: b.describe() for b in builds}
        log(f"ab_bench: {args.runs} interleaved runs (+{args.warmup_runs} warm-up) of A and B, "
            f"on {env}")
        report["templates"] = {}
        for b in builds:
            log(f"ab_bench: build {b.name}: wisp template create ({args.handler} handler)")
            report["templates"][b.name] = template_create(
                b.wisp, b.env, TEMPLATE, handler["argv"], handler["mode"], args.warmup,
                b.vm_args(args.mem))
        interleave(builds, args, handler, samples)
    except (BenchError, subprocess.TimeoutExpired) as e:
        log(f"ab_bench: {e}")
        report["error"] = str(e)[:3000]
        rc = 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["summary"] = summarize_ab(samples, args.tolerance)
    report["samples"] = samples
    write_json(args.out, report)
    if rc == 0:
        print_table(report)
    return rc


if __name__ == "__main__":
    sys.exit(main())
