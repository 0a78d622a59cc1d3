#!/usr/bin/env python3
"""virtio-blk sequential read: wisp vs QEMU microvm's virtio-blk, same kernel, same image.

The image (random data, in tmpfs so both VMMs read from memory) is read inside the guest with
`dd bs=1M iflag=direct`, so the guest's page cache does not hide the device; the guest reports
the elapsed time with its own clock. Runs interleaved, medians and the ratio, JSON out.
"""
import argparse
import os
import re
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from goals import print_verdicts  # noqa: E402
from vmrun import (environment_name, qemu_microvm_argv, run_vm, summarize,  # noqa: E402
                   write_json)
from wisp_cli import BOOT_MARKER  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Guest side: time the read with the guest's monotonic clock (busybox date has no %N; use
# /proc/uptime, 10 ms resolution, fine for reads of hundreds of MiB).
GUEST_CMD = ("read a _ < /proc/uptime; dd if=/dev/vda of=/dev/null bs=1M iflag=direct "
             "2>/dev/null && read b _ < /proc/uptime && echo BLKREAD $a $b")


def parse_seconds(out):
    m = re.search(r"BLKREAD ([0-9.]+) ([0-9.]+)", out)
    return float(m.group(2)) - float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/initramfs.cpio.gz"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/blk.json"))
    args = ap.parse_args()

    tmpdir = tempfile.mkdtemp(prefix="wisp-blk-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    image = os.path.join(tmpdir, "disk.img")
    with open(image, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1 << 20))

    base = ("console=ttyS0 reboot=t panic=-1 quiet tsc=reliable no_timer_check io_delay=none "
            f'wisp_action=cmd wisp_cmd="{GUEST_CMD}"')
    wisp_argv = [args.wisp, "run", "--kernel", args.kernel, "--initrd", args.initrd,
                 "--mem", "256", "--drive", image + ",ro", "--no-rng", "--raw-cmdline",
                 "--cmdline", base]
    # acpi=False: wisp's guest kernel (no ACPI) finds QEMU's devices on its command line.
    qemu_argv = qemu_microvm_argv(args.qemu, args.kernel, 256, acpi=False) + [
        "-initrd", args.initrd,
        "-drive", f"file={image},if=none,id=d0,format=raw,readonly=on",
        "-device", "virtio-blk-device,drive=d0",
        "-append", base]
    env = environment_name()
    print(f"blk_bench: {args.runs} runs each, {args.size_mib} MiB image, on {env}", file=sys.stderr)
    results = {"wisp": [], "qemu": []}
    try:
        for i in range(args.runs):
            # Alternating, the order turned round every run (ABBA): drift hits both alike.
            for name, argv in (("wisp", wisp_argv), ("qemu", qemu_argv))[::1 if i % 2 == 0 else -1]:
                r = run_vm(argv, BOOT_MARKER, timeout=600)
                secs = parse_seconds(r["stdout"])
                if r["rc"] != 0 or not secs:
                    print(f"blk_bench: {name} run {i} failed (rc={r['rc']}):\n"
                          f"{r['stdout'][-2000:]}\n{r['stderr'][-2000:]}", file=sys.stderr)
                    return 1
                results[name].append(args.size_mib / secs)
            print(f"  run {i + 1}/{args.runs}: wisp {results['wisp'][-1]:.0f} MiB/s, "
                  f"qemu {results['qemu'][-1]:.0f} MiB/s", file=sys.stderr)
    finally:
        os.unlink(image)
        os.rmdir(tmpdir)

    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = med["wisp"] / med["qemu"]
    report = {"benchmark": "blk_seq_read", "environment": env, "runs": args.runs,
              "image_mib": args.size_mib, "median_mib_s": med, "ratio_wisp_over_qemu": ratio,
              "summary_mib_s": {k: summarize(v) for k, v in results.items()},
              "samples_mib_s": results}
    write_json(args.out, report)
    print(f"\nvirtio-blk sequential read (dd bs=1M iflag=direct, {args.size_mib} MiB) on {env}")
    print(f"  wisp {med['wisp']:.1f} MiB/s, qemu microvm {med['qemu']:.1f} MiB/s, "
          f"ratio wisp/qemu {ratio:.2f}x (median of {args.runs})")
    print(f"  JSON: {args.out}")
    print_verdicts(report, "blk.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
