"""The public wisp commands the benchmarks drive, each timed from the host: `wisp run` to the
guest's init (cold boot), `wisp template create` and `wisp invoke --timings` (restore, call).

Only documented options and the `--timings` JSON lines are used, so two builds whose internals
differ (perf/ab_bench.py) are driven, and measured, the same way.
"""
import os
import shlex
import subprocess
import time

from vmrun import json_lines, run_vm

# What the default guest's init prints once it runs (guest/initramfs/init).
BOOT_MARKER = "wisp-guest: init ready"


class BenchError(Exception):
    """A command failed or answered wrongly; the message says which and shows its stderr."""


def run(argv, payload=b"", timeout=600, env=None, what=None):
    p = subprocess.run(argv, input=payload, capture_output=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise BenchError(f"{what or shlex.join(argv)} failed (rc={p.returncode}):\n"
                         f"{p.stderr.decode(errors='replace')[-3000:]}")
    return p


def check_result(what, out, expect):
    if out != expect:
        raise BenchError(f"{what}: the handler answered {out[:200]!r}, expected {expect!r}")


def disk_bytes(path):
    """Bytes a file or directory tree occupies on disk (sparse holes excluded)."""
    if os.path.isfile(path):
        return os.stat(path).st_blocks * 512
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(d, f)).st_blocks * 512
    return total


def peer_cmdline(wisp):
    """wisp's default kernel line (from `wisp run --help`) made fit for QEMU's microvm too, so
    both VMMs boot the guest with the same line: reboot=t (triple fault) because microvm has
    no i8042, where reboot=k would spin, and quiet (every console byte is a VM exit)."""
    text = subprocess.run([wisp, "run", "--help"], capture_output=True, text=True).stdout
    start = text.index('"', text.index("--cmdline STR")) + 1
    return text[start:text.index('"', start)].replace("reboot=k", "reboot=t") + " quiet"


def boot_argv(wisp, kernel, initrd, mem=128, vcpus=1):
    """The cold boot perf/boot_bench.py measures: the default guest, which reboots (and so
    ends the VMM) as soon as its init has printed BOOT_MARKER."""
    cmdline = peer_cmdline(wisp) + " wisp_action=reboot"
    return [wisp, "run", "--kernel", kernel, "--initrd", initrd, "--mem", str(mem),
            "--vcpus", str(vcpus), "--raw-cmdline", "--cmdline", cmdline, "--timings"]


def boot(argv, what="wisp", timeout=300):
    """One cold boot: spawn -> init marker and -> VMM exit (ms), RSS, wisp's first KVM_RUN,
    and every --timings field of the VMM (timings)."""
    r = run_vm(argv, BOOT_MARKER, timeout=timeout)
    if r["rc"] != 0 or r["marker_ms"] is None:
        raise BenchError(f"{what} boot failed (rc={r['rc']}):\n{r['stdout'][-2000:]}\n"
                         f"{r['stderr'][-2000:]}")
    timings = json_lines(r["stderr"])
    return {"marker_ms": r["marker_ms"], "exit_ms": r["exit_ms"],
            "own_rss_kib": r["own_rss_kib"], "rss_kib": r["rss_kib"],
            "first_kvm_run_ms": timings.get("first_kvm_run_ms"), "timings": timings}


def template_create(wisp, env, name, handler_argv, mode, warmup, vm_args, timeout=900):
    """`wisp template create NAME` in env's WISP_HOME; its --timings and the command's wall."""
    argv = [wisp, "template", "create", name, "--handler", shlex.join(handler_argv),
            "--mode", mode, "--warmup", str(warmup), "--timings", *vm_args]
    t0 = time.monotonic()
    p = run(argv, env=env, timeout=timeout, what="wisp template create")
    wall = (time.monotonic() - t0) * 1000
    return {"create_wall_ms": wall, "timings": json_lines(p.stderr.decode(errors="replace"))}


def invoke(wisp, env, name, payload, expect, timeout=300, extra_args=()):
    """One `wisp invoke --timings` on a fresh clone: its timing line (restore_ms, total_ms,
    ...) plus wall_ms, the whole process from spawn to exit. `extra_args` go after the
    command's own (e.g. jail options)."""
    argv = [wisp, "invoke", name, "--payload", "-", "--timings", "--timeout", "60", *extra_args]
    t0 = time.monotonic()
    p = run(argv, payload, env=env, timeout=timeout, what="wisp invoke")
    wall = (time.monotonic() - t0) * 1000
    check_result("wisp invoke", p.stdout, expect)
    t = json_lines(p.stderr.decode(errors="replace"))
    if "total_ms" not in t:
        raise BenchError("wisp invoke --timings printed no total_ms:\n" +
                         p.stderr.decode(errors="replace")[-2000:])
    t["wall_ms"] = wall
    return t
