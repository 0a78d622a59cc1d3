#!/usr/bin/env python3
"""virtio-net: wisp vs QEMU microvm's virtio-net-device, user-space back-end and vhost-net.

Issue 14, item 6. Three VMMs boot the same kernel and the same guest image
(build/guest/net-initramfs.cpio.gz: the default initramfs plus Debian's iperf3 and
guest/tools/net_rr) with the same memory and vCPUs, each with one virtio-net NIC on the same
TAP in a network namespace this benchmark makes; the servers (`iperf3 -s`, `net_rr server`) run
on the host side of that TAP, in the namespace, so no traffic leaves it:

  wisp        wisp run --net tap=NAME (its user-space device, the VMM jailed as always)
  qemu-tap    QEMU -netdev tap,vhost=off: QEMU's own user-space virtio-net back-end
  qemu-vhost  QEMU -netdev tap,vhost=on: the in-kernel vhost-net back-end

The guest gives eth0 its address itself (busybox ip) and measures with its own clock: TCP
stream guest->host (iperf3 -c) and host->guest (iperf3 -c -R), MiB/s as iperf3's receiver
reports it, then request/response round trips (net_rr: one connection, a 1-byte request and a
1-byte answer, transactions/s and the median µs). Runs are interleaved, the order turned round
every run, so drift hits every VMM alike; medians and the ratios the goals judge
(perf/goals.json: wisp ≥ 0.8× the user-space back-end, ≥ 0.5× vhost-net, each measure).
Footnote: QEMU with -netdev user (slirp), the servers reached through its 10.0.2.2, once per
run when --slirp-runs says so; its failure is reported, not fatal.

Needs root (network namespaces, TAPs); run in the testbed:
  flock /work/wt/testbed.lock tests/integration/in-kvm /usr/bin/python3 perf/net_bench.py
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from goals import print_verdicts  # noqa: E402
from vmrun import (environment_name, log, qemu_microvm_argv, run_vm, stage,  # noqa: E402
                   summarize, wait_for, write_json)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAP = "wnbtap0"
HOST_ADDR, GUEST_ADDR, PREFIX = "10.79.0.1", "10.79.0.2", 24
# slirp's fixed plan: the guest is 10.0.2.15, QEMU answers for 10.0.2.2 and connects to the
# namespace's own loopback, where the servers also listen (they bind 0.0.0.0).
SLIRP_HOST, SLIRP_GUEST = "10.0.2.2", "10.0.2.15"
IPERF_PORT, RR_PORT = 5201, 5202
VMMS = ["wisp", "qemu-tap", "qemu-vhost"]
MEASURES = ["stream_up_mb_s", "stream_down_mb_s", "rr_tps", "rr_p50_us"]
DONE = "NETBENCH done"


def guest_cmd(addr, server, seconds, rr_count):
    """The guest's shell command: address eth0, then each measure printed on a line of its
    own ("NETBENCH up|down <iperf3 receiver line>", "NETBENCH rr <net_rr line>"). iperf3's
    client is retried: the server takes a moment to close the previous test. -O 1: the first
    second (slow start, ARP) is run but not counted, the steady state is."""
    iperf = (f"{{ for i in 1 2 3 4 5; do iperf3 -c {server} -p {IPERF_PORT} -t {seconds} -O 1 -f M "
             f"$R > /tmp/o 2>&1 && break; sleep 1; done; "
             "grep -E 'sender|receiver' /tmp/o || cat /tmp/o; }")
    return (f"ip addr add {addr}/{PREFIX} dev eth0 && ip link set eth0 up && "
            f"R= && {iperf} | sed 's/^/NETBENCH up /'; "
            f"R=-R && {iperf} | sed 's/^/NETBENCH down /'; "
            f"net_rr client {server} {RR_PORT} {rr_count} 2>&1 | sed 's/^/NETBENCH rr /'; "
            # Split so the command line itself never holds the marker.
            f"echo NETBENCH d''one")


def parse(out):
    """{measure: value} from a guest's console; None for what is missing."""
    got = dict.fromkeys(MEASURES)
    for key, name in (("up", "stream_up_mb_s"), ("down", "stream_down_mb_s")):
        m = re.search(rf"NETBENCH {key} .* ([0-9.]+) MBytes/sec .*receiver", out)
        if m:
            got[name] = float(m.group(1))
    m = re.search(r"NETBENCH rr net_rr n=\d+ p50_us=([0-9.]+) p90_us=[0-9.]+ tps=([0-9.]+)", out)
    if m:
        got["rr_p50_us"], got["rr_tps"] = float(m.group(1)), float(m.group(2))
    return got


def in_ns(ns, argv):
    """argv in network namespace `ns`. nsenter, not `ip netns exec`, which mounts a sysfs of
    the namespace over /sys and hides the cgroup2 mount wisp's jail needs."""
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def make_namespace(ns, tools):
    """The namespace with lo, the TAP (the host's end: HOST_ADDR) and both servers; returns
    the server processes."""
    subprocess.run(["ip", "netns", "add", ns], check=True)
    for argv in (["ip", "link", "set", "lo", "up"],
                 ["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                 ["ip", "addr", "add", f"{HOST_ADDR}/{PREFIX}", "dev", TAP],
                 ["ip", "link", "set", TAP, "up"]):
        subprocess.run(in_ns(ns, argv), check=True)
    servers = [subprocess.Popen(in_ns(ns, argv), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
               for argv in (["iperf3", "-s", "-p", str(IPERF_PORT)],
                            [os.path.join(tools, "net_rr"), "server", "0.0.0.0", str(RR_PORT)])]

    def listening():
        tcp = subprocess.run(in_ns(ns, ["cat", "/proc/net/tcp", "/proc/net/tcp6"]),
                             capture_output=True, text=True).stdout
        return all(f":{p:04X} " in tcp for p in (IPERF_PORT, RR_PORT))
    wait_for(listening, 60, "iperf3 and net_rr to listen")
    return servers


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4, help="runs of each VMM (interleaved)")
    ap.add_argument("--seconds", type=int, default=4,
                    help="iperf3 -t of each stream (after a first second not counted)")
    ap.add_argument("--rr-count", type=int, default=1000, help="round trips per run")
    ap.add_argument("--slirp-runs", type=int, default=1, help="QEMU -netdev user runs (0: none)")
    ap.add_argument("--vmms", default=",".join(VMMS),
                    help="which of them to run (a subset: no ratios without wisp and its peer)")
    ap.add_argument("--mem", type=int, default=256, help="guest MiB, every VMM")
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/net-initramfs.cpio.gz"))
    ap.add_argument("--tools", default=os.path.join(ROOT, "build/guest/tools"),
                    help="where net_rr is (the host runs the same binary as the server)")
    ap.add_argument("--verbose", action="store_true",
                    help="log each guest's measurement lines and each VMM's stderr")
    ap.add_argument("--no-stage", action="store_true",
                    help="in the testbed, run the binaries and images from the checkout")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/net.json"))
    args = ap.parse_args()
    vmms = [v for v in args.vmms.split(",") if v]
    if not vmms or any(v not in VMMS for v in vmms):
        ap.error(f"--vmms {args.vmms}: expected a list of {','.join(VMMS)}")
    for flag, low in (("runs", 1), ("seconds", 1), ("rr_count", 1), ("slirp_runs", 0)):
        if getattr(args, flag) < low:
            ap.error(f"--{flag.replace('_', '-')} must be at least {low}")
    if os.geteuid() != 0:
        log("net_bench: needs root (network namespaces, TAPs): run it in the testbed")
        return 1
    needed = [args.kernel, args.initrd, os.path.join(args.tools, "net_rr")]
    for path in ([args.wisp] if "wisp" in vmms else []) + needed:
        if not os.path.exists(path):
            log(f"net_bench: {path} is missing (make)")
            return 1
    if not shutil.which("iperf3"):
        log("net_bench: iperf3 is not installed (scripts/setup.sh)")
        return 1

    tmp = tempfile.mkdtemp(prefix="wisp-net-bench-")
    if os.environ.get("WISP_TESTBED") and not args.no_stage:
        # Off the 9p share: every first touch of a page there is a round trip (vmrun.stage).
        bin_dir = stage(os.path.dirname(args.wisp) if "wisp" in vmms else tmp,
                        [args.kernel, args.initrd], tmp)
        args.wisp = os.path.join(bin_dir, os.path.basename(args.wisp))
        args.kernel = os.path.join(tmp, "guest", os.path.basename(args.kernel))
        args.initrd = os.path.join(tmp, "guest", os.path.basename(args.initrd))
    env = environment_name()
    ns = f"wisp-netbench-{os.getpid()}"
    servers = []

    def cmdline(addr, server):
        return ("console=ttyS0 reboot=t panic=-1 quiet tsc=reliable no_timer_check "
                "io_delay=none wisp_action=cmd "
                f'wisp_cmd="{guest_cmd(addr, server, args.seconds, args.rr_count)}"')

    base = cmdline(GUEST_ADDR, HOST_ADDR)
    # acpi=False: wisp's kernel (no ACPI) finds QEMU's devices on its command line.
    qemu = qemu_microvm_argv(args.qemu, args.kernel, args.mem, args.vcpus, acpi=False) + [
        "-initrd", args.initrd]

    def qemu_net(netdev, append):
        return qemu + ["-netdev", netdev, "-device", "virtio-net-device,netdev=n0",
                       "-append", append]
    tap = f"tap,id=n0,ifname={TAP},script=no,downscript=no"
    argvs = {
        "wisp": [args.wisp, "run", "--kernel", args.kernel, "--initrd", args.initrd,
                 "--mem", str(args.mem), "--vcpus", str(args.vcpus), "--no-rng",
                 "--net", f"tap={TAP}", "--raw-cmdline", "--cmdline", base],
        "qemu-tap": qemu_net(tap + ",vhost=off", base),
        "qemu-vhost": qemu_net(tap + ",vhost=on", base),
    }
    slirp_argv = qemu_net("user,id=n0", cmdline(SLIRP_GUEST, SLIRP_HOST))

    def one(name, argv):
        r = run_vm(in_ns(ns, argv), DONE, timeout=150 + 4 * args.seconds + args.rr_count / 20)
        got = parse(r["stdout"])
        log(f"    {name}: {r['exit_ms'] / 1000:.1f} s from spawn to exit")
        if args.verbose:
            log("\n".join(f"      {line}" for line in r["stdout"].splitlines()
                          if line.startswith("NETBENCH")) + "\n      stderr: " + r["stderr"][-800:])
        if r["rc"] != 0 or r["marker_ms"] is None or None in got.values():
            return None, (f"{name} (rc={r['rc']}) measured {got}:\n"
                          f"{r['stdout'][-1500:]}\n{r['stderr'][-1500:]}")
        return got, None

    samples = {v: {m: [] for m in MEASURES} for v in vmms}
    slirp = {m: [] for m in MEASURES}
    slirp_errors = []
    log(f"net_bench: {args.runs} runs of each of {', '.join(vmms)}; iperf3 -t {args.seconds} "
        f"each way, {args.rr_count} round trips; {args.mem} MiB, {args.vcpus} vCPU; on {env}")
    try:
        servers = make_namespace(ns, args.tools)
        for i in range(args.runs):
            order = vmms[i % len(vmms):] + vmms[:i % len(vmms)]
            order = order if i % 2 == 0 else order[::-1]
            for name in order:
                got, err = one(name, argvs[name])
                if err:
                    log(f"net_bench: run {i + 1}: {err}")
                    return 1
                for m in MEASURES:
                    samples[name][m].append(got[m])
            log(f"  run {i + 1}/{args.runs}: " + "; ".join(
                f"{v} up {samples[v]['stream_up_mb_s'][-1]:.0f} down "
                f"{samples[v]['stream_down_mb_s'][-1]:.0f} MiB/s rr "
                f"{samples[v]['rr_tps'][-1]:.0f}/s" for v in vmms))
            if i < args.slirp_runs:
                got, err = one("qemu-slirp", slirp_argv)
                if err:
                    slirp_errors.append(err[:600])
                else:
                    for m in MEASURES:
                        slirp[m].append(got[m])
    finally:
        for s in servers:
            s.kill()
            s.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {v: {m: statistics.median(samples[v][m]) for m in MEASURES} for v in vmms}

    def ratios(peer):
        if "wisp" not in med or peer not in med:
            return None
        return {"stream_up": med["wisp"]["stream_up_mb_s"] / med[peer]["stream_up_mb_s"],
                "stream_down": med["wisp"]["stream_down_mb_s"] / med[peer]["stream_down_mb_s"],
                "rr_tps": med["wisp"]["rr_tps"] / med[peer]["rr_tps"]}
    report = {
        "benchmark": "net", "environment": env, "runs": args.runs, "seconds": args.seconds,
        "rr_count": args.rr_count, "mem_mib": args.mem, "vcpus": args.vcpus,
        "kernel": args.kernel, "vmms": vmms, "median": med,
        "ratios": {"wisp_over_qemu_tap": ratios("qemu-tap"),
                   "wisp_over_qemu_vhost": ratios("qemu-vhost")},
        "summary": {v: {m: summarize(samples[v][m]) for m in MEASURES} for v in vmms},
        "samples": samples,
        "slirp": {"runs": len(slirp["rr_tps"]), "errors": slirp_errors,
                  "median": ({m: statistics.median(slirp[m]) for m in MEASURES}
                             if slirp["rr_tps"] else None)},
        "how": {"stream": f"iperf3 -t {args.seconds} -O 1, one TCP stream, MiB/s (-f M) at the "
                          "receiver; up: guest->host, down: host->guest (-R)",
                "rr": f"net_rr: {args.rr_count} 1-byte ping-pongs on one TCP connection "
                      "(TCP_NODELAY), transactions/s and median µs, guest clock"},
    }
    write_json(args.out, report)
    print(f"\nvirtio-net, wisp vs QEMU microvm virtio-net-device ({args.runs} interleaved runs, "
          f"medians; {args.mem} MiB, {args.vcpus} vCPU) on {env}")
    print(f"  {'':12} {'up MiB/s':>9} {'down MiB/s':>10} {'RR /s':>8} {'RR p50 µs':>10}")
    rows = [(v, med[v]) for v in vmms]
    if report["slirp"]["median"]:
        rows.append(("qemu-slirp*", report["slirp"]["median"]))
    for v, m in rows:
        print(f"  {v:12} {m['stream_up_mb_s']:9.1f} {m['stream_down_mb_s']:10.1f} "
              f"{m['rr_tps']:8.0f} {m['rr_p50_us']:10.0f}")
    for peer in ("qemu_tap", "qemu_vhost"):
        r = report["ratios"][f"wisp_over_{peer}"]
        if r is None:
            continue
        print(f"  wisp / {peer:10}  up {r['stream_up']:.2f}x  down {r['stream_down']:.2f}x  "
              f"rr {r['rr_tps']:.2f}x")
    if report["slirp"]["median"]:
        print(f"  * -netdev user (slirp), {report['slirp']['runs']} run(s), servers through "
              "QEMU's 10.0.2.2: a footnote, no goal")
    elif args.slirp_runs:
        print("  * -netdev user (slirp) did not run: " +
              (slirp_errors[0].splitlines()[0] if slirp_errors else "?"))
    print(f"  JSON: {args.out}")
    print_verdicts(report, "net.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
