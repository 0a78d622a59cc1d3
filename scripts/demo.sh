#!/usr/bin/env bash
# wisp's demo: boot the default guest with its console on this terminal, run a few commands
# in it, and report how long the boot took; then run a command in a fresh function sandbox with
# `wisp exec`. (Later: template -> snapshot -> warm invoke.)
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
print(f"demo: wisp exec exit {p.returncode} after {(time.monotonic() - t0) * 1000:.0f} ms "
      f"(boot, agent, sandboxed handler, teardown)")
sys.exit(p.returncode)
PY
