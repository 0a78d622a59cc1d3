#!/usr/bin/env python3
"""virtio-vsock host<->guest: wisp's user-space device (Unix-socket bridge) vs QEMU microvm with
the kernel's vhost-vsock, same guest kernel and initramfs, one session, one host.

Throughput: the host streams a buffer to a guest listener that discards it and replies with the
byte count (MiB/s from the host's clock, connect excluded). Round trip: 64-byte messages to a
guest echo listener, p50/p99 in microseconds. Medians over --runs VMs of each; JSON out.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests/integration"))
from goals import print_verdicts  # noqa: E402
from vmrun import (environment_name, pct, qemu_microvm_argv, summarize,  # noqa: E402
                   write_json)
from vsock_host import handshake  # noqa: E402

SINK_PORT, ECHO_PORT = 60, 61
GUEST_CID = 3
CHUNK = bytes(256 * 1024)


def wisp_connect(uds, port):
    s, _ = handshake(uds, port, timeout=60)
    s.settimeout(None)  # blocking, as the vhost-vsock socket it is compared with
    return s


def vhost_connect(_, port):
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    s.connect((GUEST_CID, port))
    return s


def throughput(connect, addr, nbytes):
    s = connect(addr, SINK_PORT)
    t0 = time.monotonic()
    left = nbytes
    while left:
        n = min(left, len(CHUNK))
        s.sendall(CHUNK[:n])
        left -= n
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        b = s.recv(64)
        if not b:
            break
        reply += b
    dt = time.monotonic() - t0
    s.close()
    if int(reply.strip() or 0) != nbytes:
        raise RuntimeError("guest received %r of %d bytes" % (reply, nbytes))
    return nbytes / (1 << 20) / dt


def round_trips(connect, addr, count):
    s = connect(addr, ECHO_PORT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    msg = b"x" * 64
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        s.sendall(msg)
        got = 0
        while got < 64:
            b = s.recv(64 - got)
            if not b:
                raise RuntimeError("echo closed")
            got += len(b)
        out.append((time.perf_counter() - t0) * 1e6)
    s.close()
    return out


def wait_for(path, text, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("VM exited early (rc %s)" % proc.returncode)
        try:
            with open(path, errors="replace") as f:
                if text in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("guest did not print %r" % text)



def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=64, help="bytes per throughput run")
    ap.add_argument("--rtts", type=int, default=2000)
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/test-initramfs.cpio.gz"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/vsock.json"))
    args = ap.parse_args()

    cmdline = ("console=ttyS0 reboot=t panic=-1 quiet tsc=reliable no_timer_check io_delay=none "
               "wisp_action=vsockbench")
    tmp = tempfile.mkdtemp(prefix="wisp-vsock-bench-")
    uds = os.path.join(tmp, "v.sock")
    console = os.path.join(tmp, "console.log")
    vmms = {
        "wisp": ([args.wisp, "run", "--kernel", args.kernel, "--initrd", args.initrd, "--mem",
                  "256", "--no-rng", "--vsock-uds", uds, "--console", console, "--raw-cmdline",
                  "--cmdline", cmdline], wisp_connect, uds),
        "qemu": (qemu_microvm_argv(args.qemu, args.kernel, 256, serial="file:" + console,
                                   acpi=False) +
                 ["-initrd", args.initrd, "-device", "vhost-vsock-device,guest-cid=%d" % GUEST_CID,
                  "-append", cmdline],
                 vhost_connect, None),
    }
    env = environment_name()
    print(f"vsock_bench: {args.runs} VMs each, {args.mib} MiB per stream, {args.rtts} round trips,"
          f" on {env}", file=sys.stderr)
    res = {k: {"mib_s": [], "rtt_us": []} for k in vmms}
    for i in range(args.runs):
        # Alternating, the order turned round every run (ABBA): drift hits both alike.
        for name, (argv, connect, addr) in list(vmms.items())[::1 if i % 2 == 0 else -1]:
            for p in (uds, console):
                if os.path.exists(p):
                    os.unlink(p)
            vm = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            try:
                wait_for(console, "vsockbench: listeners up", vm)
                res[name]["mib_s"].append(throughput(connect, addr, args.mib << 20))
                res[name]["rtt_us"].extend(round_trips(connect, addr, args.rtts))
            finally:
                vm.terminate()
                vm.wait()
            print(f"  run {i + 1}/{args.runs} {name}: {res[name]['mib_s'][-1]:.0f} MiB/s, "
                  f"rtt p50 {pct(res[name]['rtt_us'][-args.rtts:], 50):.0f} us", file=sys.stderr)

    summary = {k: {"mib_s_median": statistics.median(v["mib_s"]),
                   "rtt_us_p50": pct(v["rtt_us"], 50), "rtt_us_p99": pct(v["rtt_us"], 99)}
               for k, v in res.items()}
    w, q = summary["wisp"], summary["qemu"]
    ratios = {"throughput_wisp_over_vhost": w["mib_s_median"] / q["mib_s_median"],
              "rtt_p50_wisp_over_vhost": w["rtt_us_p50"] / q["rtt_us_p50"],
              "rtt_p99_wisp_over_vhost": w["rtt_us_p99"] / q["rtt_us_p99"]}
    report = {"benchmark": "vsock", "environment": env, "runs": args.runs, "mib": args.mib,
              "rtts": args.rtts, "summary": summary, "ratios": ratios,
              "summary_mib_s": {k: summarize(v["mib_s"]) for k, v in res.items()},
              "summary_rtt_us": {k: summarize(v["rtt_us"]) for k, v in res.items()},
              "samples_mib_s": {k: v["mib_s"] for k, v in res.items()}}
    write_json(args.out, report)
    print(f"\nvirtio-vsock on {env}")
    print(f"  {'':22} {'wisp (user space)':>20} {'qemu vhost-vsock':>20}")
    print(f"  {'throughput host->guest':22} {w['mib_s_median']:>14.1f} MiB/s {q['mib_s_median']:>14.1f} MiB/s")
    print(f"  {'RTT 64 B p50':22} {w['rtt_us_p50']:>17.0f} us {q['rtt_us_p50']:>17.0f} us")
    print(f"  {'RTT 64 B p99':22} {w['rtt_us_p99']:>17.0f} us {q['rtt_us_p99']:>17.0f} us")
    print(f"  ratios wisp/vhost: throughput {ratios['throughput_wisp_over_vhost']:.2f}x, "
          f"RTT p50 {ratios['rtt_p50_wisp_over_vhost']:.2f}x, p99 {ratios['rtt_p99_wisp_over_vhost']:.2f}x")
    print(f"  JSON: {args.out}")
    print_verdicts(report, "vsock.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
