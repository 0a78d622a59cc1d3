#!/usr/bin/env python3
"""Huge pages for booted guest RAM: `wisp run` with its default (2 MiB transparent huge pages)
against `--no-hugepages` (4 KiB), runs interleaved in one session on one host, the order of the
two alternating from run to run.

Per run and mode, from process spawn: the guest init's marker line on the console (boot to
init), then the time the guest takes to write TOUCH_MIB MiB into its RAM-backed root file
system (every page a first touch: an EPT/NPT fault per 4 KiB page, or per 2 MiB with huge
pages), then the jailed VMM's /proc/PID/smaps_rollup (Rss, Pss) and its guest RAM mapping's
Rss and AnonHugePages while the guest idles. Reports medians, p90 and the ratio huge/4k of each; writes JSON. `make perf` runs it
(perf/run-all.sh hugepages), `make test` does not.
"""
import argparse
import os
import selectors
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmrun import environment_name, guest_ram_smaps, summarize, write_json  # noqa: E402
from wisp_cli import BOOT_MARKER, BenchError, peer_cmdline  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOUCH_START, TOUCH_DONE = "hp-bench: touch", "hp-bench: idle"
MODES = {"huge": [], "4k": ["--no-hugepages"]}
SMAPS_FIELDS = ("Rss", "Pss", "AnonHugePages")


def guest_cmdline(wisp, touch_mib):
    """wisp's default line; the guest writes TOUCH_MIB MiB to its root (a RAM file system),
    says so, then idles until it is stopped."""
    cmd = (f"echo {TOUCH_START}; dd if=/dev/zero of=/touch bs=1048576 count={touch_mib} "
           f"2>/dev/null; echo {TOUCH_DONE}; sleep 1000")
    return peer_cmdline(wisp) + f' wisp_action=cmd wisp_cmd="{cmd}"'


def holds_vcpu_fds(pid):
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("anon_inode:kvm-vcpu"):
                return True
    except OSError:
        pass
    return False


def descendants(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(c) for c in f.read().split()]
    except OSError:
        return []
    return [d for k in kids for d in [k] + descendants(k)]


def smaps_rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in SMAPS_FIELDS:
                out[key] = int(value.split()[0])
    return out


def one_boot(argv, mem_mib, what, timeout=300):
    """Spawns argv; returns marker_ms, touch_ms and the VMM's smaps_rollup (KiB) once idle."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out, times = bytearray(), {}
    try:
        while TOUCH_DONE not in times:
            left = timeout - (time.monotonic() - t0)
            if left <= 0 or not sel.get_map():
                raise BenchError(f"{what}: no '{TOUCH_DONE}' on the console (rc={proc.poll()}):"
                                 f"\n{out.decode(errors='replace')[-2000:]}")
            for key, _ in sel.select(timeout=min(left, 1.0)):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                out += chunk
                now = (time.monotonic() - t0) * 1000
                for marker in (BOOT_MARKER, TOUCH_START, TOUCH_DONE):
                    if marker not in times and marker.encode() in out:
                        times[marker] = now
        vmm = next((p for p in [proc.pid] + descendants(proc.pid) if holds_vcpu_fds(p)), None)
        if vmm is None:
            raise BenchError(f"{what}: no process holding KVM vCPU fds under pid {proc.pid}")
        mem = smaps_rollup(vmm)
        ram = guest_ram_smaps(vmm, mem_mib)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    return {"marker_ms": times[BOOT_MARKER], "touch_ms": times[TOUCH_DONE] - times[TOUCH_START],
            **{k.lower() + "_kib": v for k, v in mem.items()},
            "guest_rss_kib": ram["Rss"], "guest_huge_kib": ram["AnonHugePages"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--wisp", default=os.environ.get("WISP_BIN",
                                                    os.path.join(ROOT, "build/bin/wisp")))
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/initramfs.cpio.gz"))
    ap.add_argument("--mem", type=int, default=128)
    ap.add_argument("--touch-mib", type=int, default=48)
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/hugepages.json"))
    args = ap.parse_args()

    base = [args.wisp, "run", "--kernel", args.kernel, "--initrd", args.initrd, "--mem",
            str(args.mem), "--raw-cmdline", "--cmdline", guest_cmdline(args.wisp, args.touch_mib)]
    env = environment_name()
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        thp = f.read().strip()
    print(f"hugepage_bench: {args.runs} runs each, {args.mem} MiB, guest writes "
          f"{args.touch_mib} MiB, THP {thp}, on {env}", file=sys.stderr)
    results = {m: [] for m in MODES}
    for i in range(args.runs):
        order = list(MODES) if i % 2 == 0 else list(reversed(MODES))
        for mode in order:
            try:
                results[mode].append(one_boot(base + MODES[mode], args.mem, f"{mode} run {i}"))
            except BenchError as e:
                print(f"hugepage_bench: {e}", file=sys.stderr)
                return 1
        print(f"  run {i + 1}/{args.runs}: " + ", ".join(
            f"{m} init {results[m][-1]['marker_ms']:.0f} ms touch "
            f"{results[m][-1]['touch_ms']:.0f} ms huge {results[m][-1]['guest_huge_kib']} KiB"
            for m in MODES), file=sys.stderr)

    keys = ("marker_ms", "touch_ms", "rss_kib", "pss_kib", "anonhugepages_kib", "guest_rss_kib",
            "guest_huge_kib")
    summary = {m: {k: summarize([s.get(k) for s in results[m]]) for k in keys} for m in MODES}
    h, s = summary["huge"], summary["4k"]
    ratio = {k: h[k]["median"] / s[k]["median"] for k in keys
             if h[k] and s[k] and s[k]["median"]}
    write_json(args.out, {"benchmark": "hugepages", "environment": env, "thp": thp,
                          "runs": args.runs, "mem_mib": args.mem, "touch_mib": args.touch_mib,
                          "summary": summary, "ratio_huge_over_4k": ratio, "samples": results})

    def fmt(x, unit):
        return f"{x['median']:9.1f} {unit} (p90 {x['p90']:.1f})" if x else "      n/a"
    print(f"\nbooted guest RAM, huge pages vs 4 KiB, on {env}, median of {args.runs} runs")
    print(f"  {'':26} {'huge (default)':>26} {'--no-hugepages':>26} {'ratio':>7}")
    for k, label, unit in (("marker_ms", "spawn -> init marker", "ms"),
                           ("touch_ms", f"guest writes {args.touch_mib} MiB", "ms"),
                           ("rss_kib", "VMM Rss", "KiB"), ("pss_kib", "VMM Pss", "KiB"),
                           ("anonhugepages_kib", "VMM AnonHugePages", "KiB"),
                           ("guest_rss_kib", "guest RAM Rss", "KiB"),
                           ("guest_huge_kib", "guest RAM AnonHugePages", "KiB")):
        r = f"{ratio[k]:.2f}x" if k in ratio else "n/a"
        print(f"  {label:26} {fmt(h[k], unit):>26} {fmt(s[k], unit):>26} {r:>7}")
    print(f"  JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
