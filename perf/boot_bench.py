#!/usr/bin/env python3
"""Cold boot benchmark: wisp vs QEMU's microvm machine, same kernel, initramfs, memory, vCPUs
and command line, runs interleaved in one session on one host.

Measures, per VMM, from process spawn: the guest init's marker line on the console, and the
VMM's exit after the guest resets. Reports medians, p90, the ratio wisp/QEMU, wisp's own
"process start -> first KVM_RUN", and each VMM's RSS without guest memory. Writes JSON.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from goals import print_verdicts  # noqa: E402
from vmrun import environment_name, qemu_microvm_argv, summarize, write_json  # noqa: E402
from wisp_cli import BenchError, boot, boot_argv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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

    # Both VMMs boot the guest with the same kernel line: wisp's own.
    wisp_argv = boot_argv(args.wisp, args.kernel, args.initrd, args.mem, args.vcpus)
    cmdline = wisp_argv[wisp_argv.index("--cmdline") + 1]
    qemu_argv = qemu_microvm_argv(args.qemu, args.kernel, args.mem, args.vcpus) + [
        "-initrd", args.initrd, "-append", cmdline]

    env = environment_name()
    print(f"boot_bench: {args.runs} runs each, {args.mem} MiB, {args.vcpus} vCPU, on {env}",
          file=sys.stderr)
    results = {"wisp": [], "qemu": []}
    for i in range(args.runs):
        # Alternating, the order turned round every run (ABBA): drift hits both alike.
        for name, argv in (("wisp", wisp_argv), ("qemu", qemu_argv))[::1 if i % 2 == 0 else -1]:
            try:
                results[name].append(boot(argv, f"{name} run {i}"))
            except BenchError as e:
                print(f"boot_bench: {e}", file=sys.stderr)
                return 1
        print(f"  run {i + 1}/{args.runs}: wisp {results['wisp'][-1]['marker_ms']:.0f} ms, "
              f"qemu {results['qemu'][-1]['marker_ms']:.0f} ms to init", file=sys.stderr)

    summary = {name: {k: summarize([sample.get(k) for sample in s]) for k in
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
    write_json(args.out, report)

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
    print_verdicts(report, "boot.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
