#!/usr/bin/env bash
# wisp's demo: boot the default guest with its console on this terminal, run a few commands
# in it, and report how long the boot took; then run a command in a fresh function sandbox with
# `wisp exec`; then what wisp is for: make a template of a function (boot, warm up, snapshot)
# and invoke it on fresh clones restored from the snapshot, with the phases timed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - <<'PY'
import os, sys
sys.path.insert(0, "perf")
from vmrun import environment_name, run_vm
# The kernel command line allows one level of double quotes, so the guest command has none.
cmd = "echo hello from the wisp guest; uname -sr; nproc; free -m; ls /sys/bus/virtio/devices"
argv = ["build/bin/wisp", "run", "--vcpus", "2", "--timings", "--cmdline",
        f'quiet wisp_action=cmd wisp_cmd="{cmd}"']
print("demo: " + " ".join(argv), file=sys.stderr)
r = run_vm(argv, "wisp-guest: init ready", timeout=300, echo=sys.stdout.buffer)
sys.stderr.write(r["stderr"])
if r["rc"] != 0 or r["marker_ms"] is None:
    print(f"demo: the VM failed (exit {r['rc']})", file=sys.stderr)
    sys.exit(1)
print(f"\ndemo: on {environment_name()}:")
print(f"  process start -> guest init ready: {r['marker_ms']:.0f} ms")
print(f"  process start -> VM exit:          {r['exit_ms']:.0f} ms")
print(f"  VMM RSS without guest memory:      {r['own_rss_kib']} KiB")

# The function sandbox: a fresh VM whose PID 1 is wisp-agent runs a command as an isolated
# handler, stdin in, stdout out.
import subprocess, time
argv = ["build/bin/wisp", "exec", "--", "sh", "-c",
        "echo \"handler got: $(cat)\"; echo \"running as uid $(id -u) on host $(hostname)\""]
print("\ndemo: echo 'hello, sandbox' | " + " ".join(argv[:3]) + " sh -c ...", file=sys.stderr)
t0 = time.monotonic()
p = subprocess.run(argv, input=b"hello, sandbox", capture_output=True)
sys.stdout.write(p.stdout.decode(errors="replace"))
sys.stderr.write(p.stderr.decode(errors="replace"))
cold_ms = (time.monotonic() - t0) * 1000
print(f"demo: wisp exec exit {p.returncode} after {cold_ms:.0f} ms "
      f"(boot, agent, sandboxed handler, teardown)")
if p.returncode != 0:
    sys.exit(p.returncode)

# Templates: the same function booted and warmed once, snapshotted, then each call on a fresh
# clone restored from the snapshot (memory mapped copy-on-write, fresh entropy and clock).
# The store is a temp dir unless WISP_HOME says otherwise. In the nested testbed the binary
# and guest are copied off the 9p share first, as a real host has them on a local disk.
import json, shutil, tempfile
work = tempfile.mkdtemp(prefix="wisp-demo-")
wisp = "build/bin/wisp"
if os.environ.get("WISP_TESTBED"):
    for d in ("bin", "guest"):
        os.makedirs(os.path.join(work, d))
    shutil.copy(wisp, os.path.join(work, "bin"))
    shutil.copy("build/bin/wisp-vmm", os.path.join(work, "bin"))  # the VMM wisp runs
    for f in ("vmlinux", "agent-initramfs.cpio.gz"):
        shutil.copy(os.path.join("build/guest", f), os.path.join(work, "guest"))
    wisp = os.path.join(work, "bin/wisp")
env = dict(os.environ)
env.setdefault("WISP_HOME", os.path.join(work, "home"))
handler = "sh -c 'echo \"handler got: $(cat)\"; head -c 4 /dev/urandom | od -An -tx1'"
argv = [wisp, "template", "create", "hello", "--handler", handler, "--warmup", "2", "--timings"]
print("\ndemo: wisp template create hello --handler \"" + handler + "\" --warmup 2", file=sys.stderr)
p = subprocess.run(argv, env=env, capture_output=True, text=True)
sys.stderr.write(p.stderr)
if p.returncode != 0:
    sys.exit(p.returncode)
totals = []
for i in range(3):
    p = subprocess.run([wisp, "invoke", "hello", "--payload", "-", "--timings"], env=env,
                       input=f"call {i + 1}", capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    t = json.loads([l for l in p.stderr.splitlines() if l.startswith("{")][-1])
    totals.append(t["total_ms"])
    print(f"demo: wisp invoke hello: restore {t['restore_ms']:.0f} ms, agent reconnect "
          f"{t['reconnect_ms']:.0f} ms, invoke {t['invoke_ms']:.0f} ms, total {t['total_ms']:.0f} ms, "
          f"{t['pages_touched']} guest pages touched")
print(f"demo: warm start (restore -> result) {min(totals):.0f} ms vs cold wisp exec "
      f"{cold_ms:.0f} ms: {cold_ms / min(totals):.1f}x faster, on {environment_name()}")
shutil.rmtree(work, ignore_errors=True)
PY
