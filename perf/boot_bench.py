#!/usr/bin/env python3
"""Cold boot benchmark: wisp vs QEMU's microvm machine, same kernel, initramfs, memory, vCPUs
and command line, runs interleaved in one session on one host.

Measures, per VMM, from process spawn: the guest init's marker line on the console, and the
VMM's exit after the guest resets. Reports medians, p90, the ratio wisp/QEMU, wisp's own
"process start -> first KVM_RUN", and each VMM's RSS without guest memory. Writes JSON.
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmrun import environment_name, pct, run_vm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "wisp-guest: init ready"


def wisp_cmdline(wisp):
    """wisp's own default microVM parameters, so QEMU's guest gets exactly the same line."""
    import subprocess
    helptext = subprocess.run([wisp, "run", "--help"], capture_output=True, text=True).stdout
    start = helptext.index('"', helptext.index("--cmdline STR")) + 1
    return helptext[start:helptext.index('"', start)]



def summarize(samples, key):
    vals = [s[key] for s in samples if s.get(key) is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "p90": pct(vals, 90), "min": min(vals),
            "max": max(vals), "n": len(vals)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/initramfs.cpio.gz"))
    ap.add_argument("--mem", type=int, default=128)
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/boot.json"))
    args = ap.parse_args()

    # reboot=t (triple fault): QEMU's microvm has no i8042, so reboot=k would spin there.
    cmdline = (wisp_cmdline(args.wisp).replace("reboot=k", "reboot=t") +
               " quiet wisp_action=reboot")
    wisp_argv = [args.wisp, "run", "--kernel", args.kernel, "--initrd", args.initrd,
                 "--mem", str(args.mem), "--vcpus", str(args.vcpus), "--raw-cmdline",
                 "--cmdline", cmdline, "--timings"]
    qemu_argv = [args.qemu, "-M", "microvm,x-option-roms=off,isa-serial=on", "-enable-kvm",
                 "-cpu", "host", "-m", str(args.mem), "-smp", str(args.vcpus), "-nodefaults",
                 "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
                 "-kernel", args.kernel, "-initrd", args.initrd, "-append", cmdline]

    env = environment_name()
    print(f"boot_bench: {args.runs} runs each, {args.mem} MiB, {args.vcpus} vCPU, on {env}",
          file=sys.stderr)
    results = {"wisp": [], "qemu": []}
    for i in range(args.runs):
        for name, argv in (("wisp", wisp_argv), ("qemu", qemu_argv)):
            r = run_vm(argv, MARKER, timeout=300)
            if r["rc"] != 0 or r["marker_ms"] is None:
                print(f"boot_bench: {name} run {i} failed (rc={r['rc']}):\n{r['stdout'][-2000:]}"
                      f"\n{r['stderr'][-2000:]}", file=sys.stderr)
                return 1
            sample = {"marker_ms": r["marker_ms"], "exit_ms": r["exit_ms"],
                      "own_rss_kib": r["own_rss_kib"], "rss_kib": r["rss_kib"]}
            if name == "wisp":
                timings = [l for l in r["stderr"].splitlines() if l.startswith("{")]
                if timings:
                    sample["first_kvm_run_ms"] = json.loads(timings[-1])["first_kvm_run_ms"]
            results[name].append(sample)
        print(f"  run {i + 1}/{args.runs}: wisp {results['wisp'][-1]['marker_ms']:.0f} ms, "
              f"qemu {results['qemu'][-1]['marker_ms']:.0f} ms to init", file=sys.stderr)

    summary = {name: {k: summarize(s, k) for k in
                      ("marker_ms", "exit_ms", "own_rss_kib", "first_kvm_run_ms")}
               for name, s in results.items()}
    w, q = summary["wisp"], summary["qemu"]
    ratio_marker = w["marker_ms"]["median"] / q["marker_ms"]["median"]
    ratio_exit = w["exit_ms"]["median"] / q["exit_ms"]["median"]
    report = {"benchmark": "cold_boot", "environment": env, "runs": args.runs, "mem_mib": args.mem,
              "vcpus": args.vcpus, "kernel": args.kernel, "initrd": args.initrd,
              "cmdline": cmdline, "summary": summary,
              "ratio_wisp_over_qemu": {"boot_to_init_marker": ratio_marker,
                                       "boot_to_exit": ratio_exit},
              "samples": results}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)

    def fmt(s, unit="ms"):
        return f"{s['median']:8.1f} {unit} (p90 {s['p90']:.1f})" if s else "     n/a"
    print(f"\ncold boot on {env}, median of {args.runs} runs")
    print(f"  {'':28} {'wisp':>24} {'qemu microvm':>24}")
    print(f"  {'spawn -> init marker':28} {fmt(w['marker_ms']):>24} {fmt(q['marker_ms']):>24}")
    print(f"  {'spawn -> VMM exit':28} {fmt(w['exit_ms']):>24} {fmt(q['exit_ms']):>24}")
    print(f"  {'VMM RSS w/o guest RAM':28} {fmt(w['own_rss_kib'], 'KiB'):>24} "
          f"{fmt(q['own_rss_kib'], 'KiB'):>24}")
    print(f"  {'wisp start -> first KVM_RUN':28} {fmt(w['first_kvm_run_ms']):>24}")
    print(f"  ratio wisp/qemu: init marker {ratio_marker:.2f}x, exit {ratio_exit:.2f}x")
    print(f"  JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
