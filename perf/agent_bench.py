#!/usr/bin/env python3
"""Agent benchmark: cold `wisp exec -- true` end to end and its split, then invocation round
trips (p50/p99) for an empty exec handler and an empty warm-worker handler in a running VM.

Cold split, per run, all on the host's monotonic clock from `wisp exec` start:
  vmm_start      wisp exec start -> the VMM's first KVM_RUN (exec's spawn time + the VMM's own
                 --timings first_kvm_run_ms)
  kernel_boot    first KVM_RUN -> guest kernel clock zero (agent-ready time minus the guest's
                 CLOCK_BOOTTIME uptime that ping reports), i.e. KVM setup before the kernel runs
  kernel_to_init guest kernel start -> wisp-agent's main() (AgentInfo.startedNs, guest clock)
  agent_ready    wisp-agent's main() -> listening on vsock (AgentInfo.readyNs - startedNs)
  agent_answer   listening -> the host's connect + ping answered (uptime at ping - readyNs);
                 the agent's own console line is quoted alongside
  first_invoke   ping answered -> first invocation's result back
  teardown       result back -> VMM exited (shutdown RPC, guest poweroff, reap)
Round trips are measured by `wisp exec --attach --repeat N --timings` (client-side clocks).
Writes JSON and names the environment (hardware KVM or the nested testbed).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from goals import print_verdicts  # noqa: E402
from vmrun import environment_name, json_lines, summarize, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An empty warm worker in busybox sh with no fork per call: `read -n 5` consumes one frame
# (u32 LE length 4, skipped NULs, 4 payload bytes), printf answers length 0, status 0.
EMPTY_WORKER = r"while read -r -n 5 x; do printf '\0\0\0\0\0'; done"
WORKER_PAYLOAD = b"ping"


def agent_console_line(console):
    for line in console.splitlines():
        if "agent" in line.lower() and "ready" in line.lower():
            return line.strip()
    return None


def cold_run(args, tmp):
    console = os.path.join(tmp, "console.log")
    argv = [args.wisp, "exec", "--timings", "--console", console, "--mem", str(args.mem)]
    if args.initrd:
        argv += ["--initrd", args.initrd]
    argv += ["--", "true"]
    t0 = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    wall_ms = (time.monotonic() - t0) * 1000
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"wisp exec -- true failed (rc={p.returncode}):\n{err[-3000:]}")
    t = json_lines(err)
    try:
        with open(console, errors="replace") as f:
            line = agent_console_line(f.read())
    except OSError:
        line = None
    # Agents that do not fill AgentInfo.startedNs/readyNs still print them on the console.
    m = re.search(r"main at ([\d.]+) ms, listening at ([\d.]+) ms", line or "")
    if m and not t.get("guest_agent_main_ms"):
        t["guest_agent_main_ms"], t["guest_agent_listening_ms"] = map(float, m.groups())
    first_run = t["exec_vmm_spawned_ms"] + t["first_kvm_run_ms"]
    kernel_zero = t["exec_agent_ready_ms"] - t["guest_uptime_ms"]
    return {
        "wall_ms": wall_ms,
        "vmm_start_ms": first_run,
        "kernel_boot_ms": kernel_zero - first_run,
        "kernel_to_init_ms": t["guest_agent_main_ms"],
        "agent_ready_ms": t["guest_agent_listening_ms"] - t["guest_agent_main_ms"],
        "agent_answer_ms": t["guest_uptime_ms"] - t["guest_agent_listening_ms"],
        "first_invoke_ms": t["exec_invoke_done_ms"] - t["exec_agent_ready_ms"],
        "teardown_ms": t["exec_vmm_exit_ms"] - t["exec_invoke_done_ms"],
        "agent_connected_ms": t["exec_agent_connected_ms"],
        "agent_console_line": line,
    }


def round_trips(args, sock, mode, n):
    argv = [args.wisp, "exec", "--attach", sock, "--repeat", str(n), "--timings"]
    if mode == "worker":
        argv += ["--mode", "worker", "--", "sh", "-c", EMPTY_WORKER]
        payload = WORKER_PAYLOAD
    else:
        argv += ["--", "true"]
        payload = b""
    p = subprocess.run(argv, input=payload, capture_output=True, timeout=1800)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{mode} round trips failed (rc={p.returncode}):\n{err[-3000:]}")
    rtts = json_lines(err).get("exec_rtt_us", [])
    return rtts[args.warmup:] if len(rtts) > args.warmup else rtts


def warm_vm(args, tmp):
    sock = os.path.join(tmp, "warm.sock")
    initrd = args.initrd or os.path.join(ROOT, "build/guest/agent-initramfs.cpio.gz")
    argv = [args.wisp, "run", "--initrd", initrd, "--mem", str(args.mem), "--vsock-uds", sock,
            "--console", "none", "--cmdline", "quiet"]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE), sock


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="cold `wisp exec -- true` runs")
    ap.add_argument("--calls", type=int, default=200, help="round trips per handler kind")
    ap.add_argument("--warmup", type=int, default=5, help="round trips dropped at the start")
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--initrd", default=None, help="agent guest (default: wisp exec's)")
    ap.add_argument("--mem", type=int, default=256)
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/agent.json"))
    args = ap.parse_args()

    env = environment_name()
    print(f"agent_bench: {args.runs} cold runs, {args.calls} calls per handler kind, "
          f"{args.mem} MiB, on {env}", file=sys.stderr)
    cold = []
    with tempfile.TemporaryDirectory(prefix="wisp-agent-bench-") as tmp:
        for i in range(args.runs):
            cold.append(cold_run(args, tmp))
            print(f"  cold {i + 1}/{args.runs}: {cold[-1]['wall_ms']:.0f} ms", file=sys.stderr)
        vm, sock = warm_vm(args, tmp)
        try:
            rtt = {}
            for mode in ("exec", "worker"):
                rtt[mode] = round_trips(args, sock, mode, args.calls + args.warmup)
                print(f"  {mode}: {len(rtt[mode])} round trips", file=sys.stderr)
            subprocess.run([args.wisp, "exec", "--attach", sock, "--", "true"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        finally:
            vm.kill()
            vm.wait()

    keys = ("wall_ms", "vmm_start_ms", "kernel_boot_ms", "kernel_to_init_ms", "agent_ready_ms",
            "agent_answer_ms", "first_invoke_ms", "teardown_ms")
    summary = {"cold": {k: summarize([c[k] for c in cold]) for k in keys},
               "rtt_us": {m: summarize(v) for m, v in rtt.items()}}
    report = {"benchmark": "agent", "environment": env, "runs": args.runs, "calls": args.calls,
              "mem_mib": args.mem, "worker": EMPTY_WORKER,
              "agent_console_line": next((c["agent_console_line"] for c in cold
                                          if c["agent_console_line"]), None),
              "summary": summary, "samples": {"cold": cold, "rtt_us": rtt}}
    write_json(args.out, report)

    print(f"\nagent on {env}")
    print(f"  cold `wisp exec -- true`, median (p90) of {args.runs} runs")
    for k in keys:
        s = summary["cold"][k]
        print(f"    {k:18} {s['median']:9.1f} ms ({s['p90']:.1f})")
    if report["agent_console_line"]:
        print(f"    agent console: {report['agent_console_line']}")
    print(f"  invocation round trip in a running VM ({args.calls} calls)")
    for m, s in summary["rtt_us"].items():
        if s:
            print(f"    {m + ' handler':18} p50 {s['p50']:9.0f} us   p99 {s['p99']:9.0f} us")
    print(f"  JSON: {args.out}")
    print_verdicts(report, "agent.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
