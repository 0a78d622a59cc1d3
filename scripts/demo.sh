#!/usr/bin/env bash
# wisp's demo: boot the default guest with its console on this terminal, run a few commands
# in it, and report how long the boot took; then run a command in a fresh function sandbox with
# `wisp exec`; then what wisp is for: make a template of a function (boot, warm up, snapshot)
# and invoke it on fresh clones restored from the snapshot, with the phases timed; last the
# same for a serverless-ML worker (numpy, scikit-learn), cold against warm.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - <<'PY'
import os, sys
sys.path.insert(0, "perf")
from vmrun import environment_name, run_vm, stage
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
    guest = [os.path.join("build/guest", f) for f in ("vmlinux", "agent-initramfs.cpio.gz")]
    wisp = os.path.join(stage("build/bin", guest, work), "wisp")
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

# Serverless ML (issue 15): a real runtime's start is imports and model set-up, paid by every
# cold start and by no warm one. guest/runtimes/ml_worker.py imports numpy and scikit-learn and
# trains a classifier (100 000 x 50 rows, 5 epochs); a call is one partial_fit on 1 000 rows.
from ml_bench import MINIBATCH, WORKER, labelled_rows, parse_coefficients, request, worker_init
ml_rootfs = "build/guest/ml-rootfs.ext4"
if not os.path.exists(ml_rootfs):
    print(f"\ndemo: {ml_rootfs} is missing (make ml-rootfs): no serverless-ML step")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0)
if os.environ.get("WISP_TESTBED"):
    os.makedirs(os.path.join(work, "guest"), exist_ok=True)  # off the 9p share, as above
    ml_rootfs = shutil.copy(ml_rootfs, os.path.join(work, "guest"))
ml_vm = ["--mem", "512", "--rootfs", ml_rootfs]
fit = request(b"fit1", *labelled_rows(MINIBATCH, seed=1))
warm_file = os.path.join(work, "ml-warmup.bin")
with open(warm_file, "wb") as f:
    f.write(request(b"warm", *labelled_rows(MINIBATCH, seed=2)))
print(f"\ndemo: serverless ML, cold: wisp exec --rootfs ml-rootfs.ext4 --mode worker -- "
      f"{' '.join(WORKER)} (boot, import numpy + sklearn, train, partial_fit)", file=sys.stderr)
t0 = time.monotonic()
p = subprocess.run([wisp, "exec", "--timeout", "900", *ml_vm, "--mode", "worker", "--", *WORKER],
                   input=fit, capture_output=True)
ml_cold_ms = (time.monotonic() - t0) * 1000
if p.returncode != 0:
    sys.stderr.write(p.stderr.decode(errors="replace")[-3000:])
    sys.exit(p.returncode)
_, _, cos = parse_coefficients("cold call", p.stdout)
init = worker_init(p.stderr.decode(errors="replace")) or {}
print(f"demo: cold ML call {ml_cold_ms:.0f} ms (worker start: imports {init.get('import_s')} s, "
      f"dataset {init.get('data_s')} s, training {init.get('fit_s')} s; numpy "
      f"{init.get('numpy')}, sklearn {init.get('sklearn')}); coefficients along the true rule: "
      f"cosine {cos:.3f}")
print("demo: wisp template create ml --mode worker (the trained worker, snapshotted)",
      file=sys.stderr)
p = subprocess.run([wisp, "template", "create", "ml", "--handler", " ".join(WORKER), "--mode",
                    "worker", "--warmup-payload", warm_file, *ml_vm], env=env,
                   capture_output=True, text=True)
if p.returncode != 0:
    sys.stderr.write(p.stderr[-3000:])
    sys.exit(p.returncode)
ml_totals = []
for i in range(3):
    p = subprocess.run([wisp, "invoke", "ml", "--payload", "-", "--timings"], env=env, input=fit,
                       capture_output=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode(errors="replace")[-3000:])
        sys.exit(p.returncode)
    parse_coefficients("warm call", p.stdout)
    t = json.loads([l for l in p.stderr.decode().splitlines() if l.startswith("{")][-1])
    ml_totals.append(t["total_ms"])
    print(f"demo: wisp invoke ml: restore {t['restore_ms']:.0f} ms, reconnect "
          f"{t['reconnect_ms']:.0f} ms, partial_fit call {t['invoke_ms']:.0f} ms, total "
          f"{t['total_ms']:.0f} ms")
print(f"demo: serverless ML: warm (restore -> updated coefficients) {min(ml_totals):.0f} ms vs "
      f"cold {ml_cold_ms:.0f} ms: {ml_cold_ms / min(ml_totals):.0f}x faster (goal: 100x), on "
      f"{environment_name()}")
shutil.rmtree(work, ignore_errors=True)
PY
