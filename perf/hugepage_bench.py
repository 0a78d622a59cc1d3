#!/usr/bin/env python3
"""Huge pages for booted guest RAM: `wisp run` with its default (2 MiB transparent huge pages)
against `--no-hugepages` (4 KiB), runs interleaved in one session on one host, the order of the
two alternating from run to run.

Per run and mode, from process spawn: the guest init's marker line on the console (boot to
init), then the time the guest takes to write TOUCH_MIB MiB into its RAM-backed root file
system (every page a first touch: an EPT/NPT fault per 4 KiB page, or per 2 MiB with huge
pages), then the jailed VMM's /proc/PID/smaps_rollup (Rss, Pss) and its guest RAM mapping's
Rss and AnonHugePages while the guest idles. Reports medians, p90 and the ratio huge/4k of each.

Then restore (--clones N, 0: skipped): a snapshot of such a guest (its written MiB in RAM),
restored N clones at a time, side by side in rounds, with the default mapping (the memory
file MAP_PRIVATE, 4 KiB, shared page cache) and with `wisp snapshot restore --hugepages` (a
copy into anonymous THP memory): each clone's snapshot_loaded_ms / restored_ms (--timings), and
the clones' summed PSS against N x one clone's (density). Writes JSON. `make perf` runs it
(perf/run-all.sh hugepages), `make test` does not.
"""
import argparse
import os
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmrun import (environment_name, guest_ram_smaps, json_lines, smaps_rollup,  # noqa: E402
                   summarize, wait_for, write_json)
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


def vmm_memory(pid):
    """The VMM's SMAPS_FIELDS from smaps_rollup."""
    return {k: v for k, v in smaps_rollup(pid).items() if k in SMAPS_FIELDS}


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
        mem = vmm_memory(vmm)
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


def vmm_under(pid):
    return next((p for p in [pid] + descendants(pid) if holds_vcpu_fds(p)), None)


def make_snapshot(wisp, base_argv, tmp):
    """Boots the touch guest with a control socket, snapshots it once it idles; the dir."""
    ctl, snap = os.path.join(tmp, "boot.sock"), os.path.join(tmp, "snap")
    proc = subprocess.Popen(base_argv + ["--control-socket", ctl], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out = bytearray()
        while TOUCH_DONE.encode() not in out:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise BenchError("the snapshot's guest ended before it idled")
            out += chunk
        p = subprocess.run([wisp, "snapshot", "create", "--control-socket", ctl, snap],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise BenchError("wisp snapshot create failed:\n" + p.stderr[-2000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    return snap


def restore_round(wisp, snap, n, extra, tmp, tag):
    """n clones of `snap` at once; each one's restore timings, its VMM's Pss and guest RAM."""
    clones = []
    try:
        for i in range(n):
            ctl = os.path.join(tmp, f"{tag}-{i}.sock")
            p = subprocess.Popen([wisp, "snapshot", "restore", snap, "--console", "none",
                                  "--control-socket", ctl, "--timings", *extra],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            clones.append((p, ctl))
        for p, ctl in clones:
            wait_for(lambda: subprocess.run([wisp, "vm", "ping", "--control-socket", ctl],
                                            capture_output=True).returncode == 0,
                     300, f"clone {ctl} to answer")
        time.sleep(1)  # the guests settle (each runs its idle loop) before the memory is read
        mem = []
        for p, _ in clones:
            vmm = vmm_under(p.pid)
            if vmm is None:
                raise BenchError(f"{tag}: no VMM under pid {p.pid}")
            mem.append((vmm_memory(vmm)["Pss"], guest_ram_smaps_any(vmm)))
    finally:
        for p, _ in clones:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    out = []
    for (p, _), (pss, ram) in zip(clones, mem):
        _, err = p.communicate(timeout=60)
        t = json_lines(err)
        out.append({"pss_kib": pss, "guest_rss_kib": ram.get("Rss"),
                    "guest_huge_kib": ram.get("AnonHugePages"),
                    "snapshot_loaded_ms": t.get("snapshot_loaded_ms"),
                    "restored_ms": t.get("restored_ms")})
    return out


def guest_ram_smaps_any(pid):
    """The guest RAM mapping of a clone: its largest mapping (the memory file or the copy)."""
    best, fields = None, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not line.split(":", 1)[0].isalpha():
                fields = {}
                if best is None:
                    best = fields
            elif fields is not None and line.endswith("kB\n"):
                key, _, value = line.partition(":")
                fields[key] = int(value.split()[0])
                if key == "Size" and fields["Size"] > best.get("Size", 0):
                    best = fields
    return best or {}


def restore_bench(args, base_argv):
    """Default restore vs --hugepages, `args.clones` clones a round, rounds alternating."""
    tmp = tempfile.mkdtemp(prefix="wisp-hp-bench-")
    snap = make_snapshot(args.wisp, base_argv, tmp)
    modes = {"file_4k": [], "copy_huge": ["--hugepages"]}
    samples = {m: [] for m in modes}
    for r in range(args.restore_rounds):
        for m in (list(modes) if r % 2 == 0 else list(reversed(modes))):
            got = restore_round(args.wisp, snap, args.clones, modes[m], tmp, f"{m}{r}")
            samples[m].append(got)
            print(f"  restore round {r + 1}/{args.restore_rounds} {m}: sum PSS "
                  f"{sum(c['pss_kib'] for c in got) / 1024:.1f} MiB, restored "
                  f"{statistics.median(c['restored_ms'] or 0 for c in got):.0f} ms",
                  file=sys.stderr)
    summary = {}
    for m in modes:
        flat = [c for rnd in samples[m] for c in rnd]
        sums = [sum(c["pss_kib"] for c in rnd) for rnd in samples[m]]
        one = statistics.median(c["pss_kib"] for c in flat)
        summary[m] = {"restored_ms": summarize([c["restored_ms"] for c in flat]),
                      "snapshot_loaded_ms": summarize([c["snapshot_loaded_ms"] for c in flat]),
                      "pss_kib": summarize([c["pss_kib"] for c in flat]),
                      "guest_huge_kib": summarize([c["guest_huge_kib"] for c in flat]),
                      "sum_pss_kib": summarize(sums),
                      "density": statistics.median(sums) / (args.clones * one)}
    return {"clones": args.clones, "rounds": args.restore_rounds, "summary": summary,
            "samples": samples}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--wisp", default=os.environ.get("WISP_BIN",
                                                    os.path.join(ROOT, "build/bin/wisp")))
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/initramfs.cpio.gz"))
    ap.add_argument("--mem", type=int, default=128)
    ap.add_argument("--touch-mib", type=int, default=48)
    ap.add_argument("--clones", type=int, default=4, help="clones a restore round (0: none)")
    ap.add_argument("--restore-rounds", type=int, default=3)
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
    restore = None
    if args.clones > 0:
        try:
            restore = restore_bench(args, base)
        except (BenchError, AssertionError, subprocess.SubprocessError) as e:
            print(f"hugepage_bench: restore: {e}", file=sys.stderr)
            return 1
    write_json(args.out, {"benchmark": "hugepages", "environment": env, "thp": thp,
                          "runs": args.runs, "mem_mib": args.mem, "touch_mib": args.touch_mib,
                          "summary": summary, "ratio_huge_over_4k": ratio, "samples": results,
                          "restore": restore})

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
    if restore:
        print(f"\nrestore, {args.clones} clones at a time, {args.restore_rounds} rounds each, "
              "median per clone")
        print(f"  {'':26} {'file, 4 KiB (default)':>26} {'--hugepages (copy)':>26}")
        a, b = restore["summary"]["file_4k"], restore["summary"]["copy_huge"]
        for k, label, unit in (("snapshot_loaded_ms", "start -> snapshot loaded", "ms"),
                               ("restored_ms", "start -> VM restored", "ms"),
                               ("pss_kib", "one clone's PSS", "KiB"),
                               ("sum_pss_kib", f"sum PSS of {args.clones}", "KiB"),
                               ("guest_huge_kib", "guest RAM AnonHugePages", "KiB")):
            print(f"  {label:26} {fmt(a[k], unit):>26} {fmt(b[k], unit):>26}")
        print(f"  {'sum PSS / (N x one clone)':26} {a['density']:26.2f} {b['density']:26.2f}")
    print(f"  JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
