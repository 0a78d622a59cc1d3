#!/usr/bin/env python3
"""Jail cost benchmark: whole `wisp exec` and `wisp invoke` processes, jailed and unjailed,
interleaved in one run of one build.

Every VMM runs jailed by default (namespaces, pivot_root, its own uid, no capabilities,
seccomp, a cgroup). What that costs is measured here against the same build with `--no-jail`:
the unjailed baseline. This is the one benchmark that passes --no-jail, because the jail's
cost is the difference between the two; every other benchmark and test runs jailed.

Per round, in ABBA order (jailed then unjailed, the next round unjailed then jailed, so that a
steady drift of the host falls on both alike):

  exec     a whole `wisp exec -- /bin/true` process on the agent guest, spawn -> exit
           (also its --timings: the VMM's jail_ms, agent ready)
  invoke   a whole `wisp invoke NAME` process, spawn -> exit, and its --timings restore_ms,
           total_ms and the VMM's jail_ms, on one template made once, jailed, by
           `wisp template create`
  boot     `wisp run --timings` of the default guest, spawn -> its init's marker line, and
           the VMM's jail_ms (the time its jail took to set up; 0 unjailed)

Goals (jailed / unjailed of the medians): exec and invoke processes <= 1.05, restore_ms <=
1.10; each is marked met or not met. Also given: the median of each round's own ratio, which
a drift between rounds does not move. The exit status is 0 unless a command failed. JSON (every
sample, the summaries, the ratios) to --out, a table on stdout. Guests must boot: run it where
they can, e.g.
  tests/integration/in-kvm python3 perf/jail_bench.py --runs 6
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot_bench import HANDLERS, PAYLOAD  # noqa: E402
from goals import print_verdicts  # noqa: E402
from vmrun import environment_name, json_lines, log, stage, summarize, write_json  # noqa: E402
from wisp_cli import BenchError, boot, boot_argv, invoke, run, template_create  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = "jail-bench"
HANDLER = HANDLERS["exec"]  # `cat`: the invoke's result is its payload
# mode -> the jail options every command of that mode gets. "unjailed" is the baseline the
# jail is measured against, the only sanctioned use of --no-jail in a benchmark.
MODES = {"jailed": [], "unjailed": ["--no-jail"]}

# (key in a sample, label, goal: the largest jailed/unjailed ratio of the medians allowed).
GOALS = [("exec_wall_ms", "exec: process spawn -> exit", 1.05),
         ("invoke_wall_ms", "invoke: process spawn -> exit", 1.05),
         ("restore_ms", "invoke: restore_ms", 1.10)]
# Recorded, summarized and given a ratio, not judged.
# restore_ms less the VMM's jail_ms is what a restore costs once the VMM is jailed already
# (a pre-jailed pool's VMM).
EXTRA_METRICS = [("restore_less_jail_ms", "invoke: restore_ms - jail_ms"),
                 ("invoke_total_ms", "invoke: total_ms"),
                 ("exec_agent_ready_ms", "exec: spawn -> agent ready"),
                 ("boot_ms", "boot: spawn -> init"),
                 ("boot_exit_ms", "boot: spawn -> exit")]
# Recorded and summarized per mode only (no ratio: 0 or absent unjailed).
JAIL_METRICS = [("jail_ms", "boot: the VMM's jail_ms"),
                ("exec_jail_ms", "exec: the VMM's jail_ms"),
                ("invoke_jail_ms", "invoke: the VMM's jail_ms")]
ALL_METRICS = [(key, label) for key, label, _ in GOALS] + EXTRA_METRICS + JAIL_METRICS
# What each round's progress line shows.
PROGRESS = [("exec_wall_ms", "exec"), ("invoke_wall_ms", "invoke"), ("boot_ms", "boot")]


class Setup:
    """The binaries and guest files one run uses, and the WISP_HOME its template lives in."""

    def __init__(self, args, work):
        self.wisp = os.path.abspath(args.wisp)
        self.kernel, self.initrd, self.agent_initrd = args.kernel, args.initrd, args.agent_initrd
        for path, what in ((self.wisp, "wisp (make wisp)"),
                           (self.kernel, "the guest kernel (make guest)"),
                           (self.initrd, "the default guest (make guest)"),
                           (self.agent_initrd, "the agent guest (make agent-guest)")):
            if not os.path.isfile(path):
                raise BenchError(f"{path} is missing: build {what}")
        self.env = dict(os.environ, WISP_HOME=os.path.join(work, "home"))
        self.mem, self.boot_mem = args.mem, args.boot_mem
        if os.environ.get("WISP_TESTBED") and not args.no_stage:
            self.stage(work)

    def stage(self, work):
        """Copies wisp (with its bin/ siblings) and the guest files off the testbed's 9p share
        (vmrun.stage), so that no run pays a first 9p read the others do not."""
        files = [self.kernel, self.initrd, self.agent_initrd]
        self.wisp = os.path.join(stage(os.path.dirname(self.wisp), files, work), "wisp")
        guest = os.path.join(work, "guest")
        self.kernel, self.initrd, self.agent_initrd = (
            os.path.join(guest, os.path.basename(p)) for p in files)
        log(f"jail_bench: staged wisp and the guest files in {work} (testbed: off the 9p share)")

    def vm_args(self):
        return ["--mem", str(self.mem), "--vcpus", "1", "--kernel", self.kernel,
                "--initrd", self.agent_initrd]

    def describe(self):
        p = subprocess.run([self.wisp, "--version"], capture_output=True, text=True)
        return {"wisp": self.wisp, "version": p.stdout.strip() or None, "commit": git_commit(),
                "kernel": self.kernel, "initrd": self.initrd, "agent_initrd": self.agent_initrd}


def git_commit():
    """The checkout's commit (and whether it has local changes), or None outside a checkout."""
    p = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=40"],
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def measure_exec(s, mode):
    """One whole `wisp exec -- /bin/true` process: a fresh VM booted, the call, power-off."""
    argv = [s.wisp, "exec", "--timings", "--timeout", "60", "--boot-timeout", "300", "-n",
            *s.vm_args(), *MODES[mode], "--", "/bin/true"]
    t0 = time.monotonic()
    p = run(argv, timeout=900, what=f"wisp exec ({mode})")
    wall = (time.monotonic() - t0) * 1000
    t = json_lines(p.stderr.decode(errors="replace"))
    return {"exec_wall_ms": wall, "exec_agent_ready_ms": t.get("exec_agent_ready_ms"),
            "exec_jail_ms": t.get("jail_ms")}


def measure_invoke(s, mode):
    t = invoke(s.wisp, s.env, TEMPLATE, PAYLOAD, HANDLER["expect"], extra_args=MODES[mode])
    restore, jail = t.get("restore_ms"), t.get("jail_ms")
    return {"invoke_wall_ms": t["wall_ms"], "restore_ms": restore,
            "invoke_total_ms": t["total_ms"], "invoke_jail_ms": jail,
            "restore_less_jail_ms": restore - jail if None not in (restore, jail) else None}


def measure_boot(s, mode):
    argv = boot_argv(s.wisp, s.kernel, s.initrd, s.boot_mem) + MODES[mode]
    b = boot(argv, f"wisp run ({mode})")
    return {"boot_ms": b["marker_ms"], "boot_exit_ms": b["exit_ms"],
            "jail_ms": b["timings"].get("jail_ms")}


# name -> how one sample of it is taken, in the order a round takes them.
STEPS = {"exec": measure_exec, "invoke": measure_invoke, "boot": measure_boot}


def check_jail_ms(row, mode):
    """The jailed VMM must report a jail set up, the unjailed one none: else the modes are not
    what they claim, and the ratios mean nothing."""
    for key, _ in JAIL_METRICS:
        v = row.get(key)
        if mode == "jailed" and v is not None and v <= 0:
            raise BenchError(f"the jailed VMM reported {key} {v}: it set up no jail")
        if mode == "unjailed" and v:
            raise BenchError(f"the VMM run with --no-jail reported {key} {v}")


def interleave(s, args, samples):
    """Warm-up rounds (not kept), then --runs rounds of exec, invoke and boot in each mode,
    the modes' order flipping every round (ABBA)."""
    steps = [STEPS[name] for name in args.steps]
    for i in range(-args.warmup_runs, args.runs):
        order = list(MODES)[::-1] if i % 2 else list(MODES)
        for step in steps:
            for mode in order:
                row = step(s, mode)
                check_jail_ms(row, mode)
                if i >= 0:
                    samples[mode][i].update(row)
        if i >= 0:
            log(f"  run {i + 1}/{args.runs}: " + "; ".join(
                f"{m} " + ", ".join(f"{label} {samples[m][i][key]:.0f} ms"
                                    for key, label in PROGRESS if key in samples[m][i])
                for m in MODES))


def paired_ratio(samples, key):
    """The median over rounds of jailed / unjailed within a round: the two samples of a round
    ran seconds apart, so this cancels a drift between rounds that the medians keep."""
    pairs = [(j.get(key), u.get(key)) for j, u in zip(samples["jailed"], samples["unjailed"])]
    ratios = [a / b for a, b in pairs if a is not None and b]
    return statistics.median(ratios) if ratios else None


def summarize_modes(samples):
    out = {}
    judged = {key: goal for key, _, goal in GOALS}
    for key, _ in ALL_METRICS:
        row = {m: summarize([x.get(key) for x in samples[m]]) for m in MODES}
        if key not in dict(JAIL_METRICS):
            j, u = row["jailed"], row["unjailed"]
            row["ratio_jailed_over_unjailed"] = (j["median"] / u["median"]
                                                 if j and u and u["median"] else None)
            row["median_paired_ratio"] = paired_ratio(samples, key)
        if key in judged:
            ratio = row["ratio_jailed_over_unjailed"]
            row["goal"] = judged[key]
            row["goal_met"] = None if ratio is None else ratio <= judged[key]
        out[key] = row
    return out


def print_table(report):
    print(f"\nthe jail's cost on {report['environment']}: median (p90) of {report['runs']} "
          f"interleaved (ABBA) runs each; commit {report['setup'].get('commit')}")
    print(f"  {'ms':32} {'jailed':>18} {'unjailed':>18} {'ratio':>7} {'paired':>7}  goal")

    def cell(x):
        return f"{x['median']:9.1f} ({x['p90']:6.1f})" if x else f"{'-':>18}"
    summary = report["summary"]
    for key, label in ALL_METRICS:
        row = summary[key]
        ratio, paired = row.get("ratio_jailed_over_unjailed"), row.get("median_paired_ratio")
        verdict = ""
        if "goal" in row:
            met = {True: "met", False: "NOT met", None: "-"}[row["goal_met"]]
            verdict = f"<= {row['goal']:.2f}: {met}"
        print(f"  {label:32} {cell(row['jailed']):>18} {cell(row['unjailed']):>18} "
              f"{(f'{ratio:.3f}' if ratio else '-'):>7} "
              f"{(f'{paired:.3f}' if paired else '-'):>7}  {verdict}")
    print("  ratio: jailed / unjailed of the medians (judged); paired: the median of each "
          "round's own ratio")
    missed = [lbl for k, lbl, _ in GOALS if summary[k]["goal_met"] is False]
    unmeasured = [lbl for k, lbl, _ in GOALS if summary[k]["goal_met"] is None]
    verdict = "all met" if not unmeasured else "met where measured"
    if missed:
        verdict = f"NOT all met ({', '.join(missed)})"
    if unmeasured:
        verdict += f"; not measured: {', '.join(unmeasured)}"
    print(f"  goals: {verdict}")
    print(f"  JSON: {report['out']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="interleaved rounds kept")
    ap.add_argument("--warmup-runs", type=int, default=1, help="rounds run first, not kept")
    ap.add_argument("--warmup", type=int, default=2, help="the template's warm-up calls")
    ap.add_argument("--mem", type=int, default=256, help="exec and template guest MiB")
    ap.add_argument("--boot-mem", type=int, default=128, help="boot guest MiB (boot_bench's)")
    ap.add_argument("--steps", default=",".join(STEPS),
                    help=f"comma list of the steps to measure (default: {','.join(STEPS)})")
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/initramfs.cpio.gz"))
    ap.add_argument("--agent-initrd",
                    default=os.path.join(ROOT, "build/guest/agent-initramfs.cpio.gz"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/jail.json"))
    ap.add_argument("--no-stage", action="store_true",
                    help="in the testbed, run wisp and the guest files from the checkout (9p)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    args.steps = [n.strip() for n in args.steps.split(",") if n.strip()]
    if not args.steps or any(n not in STEPS for n in args.steps):
        ap.error(f"--steps: expected a comma list of {', '.join(STEPS)}")

    env = environment_name()
    work = tempfile.mkdtemp(prefix="wisp-jail-bench-")
    report = {"benchmark": "jail", "environment": env, "runs": args.runs,
              "warmup_runs": args.warmup_runs, "order": "abba", "modes": MODES,
              "steps": args.steps,
              "handler": HANDLER["argv"], "mem_mib": args.mem, "boot_mem_mib": args.boot_mem,
              "out": args.out}
    samples = {m: [{} for _ in range(args.runs)] for m in MODES}
    rc = 0
    try:
        s = Setup(args, work)
        report["setup"] = s.describe()
        log(f"jail_bench: {args.runs} interleaved rounds (+{args.warmup_runs} warm-up) of "
            f"{', '.join(args.steps)}, jailed and unjailed, on {env}")
        if "invoke" in args.steps:
            log("jail_bench: wisp template create (jailed)")
            report["template"] = template_create(s.wisp, s.env, TEMPLATE, HANDLER["argv"],
                                                 HANDLER["mode"], args.warmup, s.vm_args())
        interleave(s, args, samples)
    except (BenchError, subprocess.TimeoutExpired) as e:
        log(f"jail_bench: {e}")
        report["error"] = str(e)[:3000]
        rc = 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["summary"] = summarize_modes(samples)
    report["samples"] = samples
    write_json(args.out, report)
    if rc == 0:
        print_table(report)
        print_verdicts(report, "jail.json")
    return rc


if __name__ == "__main__":
    sys.exit(main())
