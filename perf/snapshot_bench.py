#!/usr/bin/env python3
"""Snapshot benchmark: restore -> first handler result, against a cold start and against QEMU.

For a 256 MiB, 1-vCPU agent guest and each handler (an exec handler, `cat`; a Python warm
worker, guest/runtimes/python_worker.py on the Python rootfs), on one host, one session:

  wisp snapshot   `wisp template create` (create time, memory file size and disk use), then
                  --runs x `wisp invoke --timings`: restore -> resumed -> first result
                  (total_ms, with its split and the pages the restore touched)
  wisp cold       `wisp exec` of the same handler on a fresh boot, spawn -> first result
                  (exec: one exec call; worker: boot + startWorker + first invoke)
  QEMU microvm    the same kernel, guest and memory; warmed up the same way, stopped and
                  migrated to a file (`migrate exec:cat > FILE`); then --runs x: spawn QEMU
                  with `-incoming exec:cat FILE` -> connect over AF_VSOCK (vhost-vsock) ->
                  resumed -> first result (`wisp exec --attach vsock:CID --resumed`)
  clones          --clones concurrent `wisp snapshot restore` of one template, each answering
                  its agent; RSS and PSS of each VMM process (/proc/PID/smaps_rollup)

Working-set prefetch (issue 13): with --prefetch ab (the default) every restore is run twice,
interleaved (order alternating), with the template's recorded working set prefetched and with
`--no-prefetch`: restore -> first result, the pages first touched on the critical path (pages
resident after the call that were not prefetched: pages_touched minus the working set's), and
the host page faults (minor/major) of the `wisp invoke` process tree (getrusage of its waited
children: the VMM and `wisp invoke` itself), and KVM's own counters of the clone's vCPUs from
restore to result (`exits`, and `nested_page_faults`: EPT/NPT faults, one per guest page first
touched in the clone, unless the restore mapped the page in KVM ahead: KVM_PRE_FAULT_MEMORY,
Linux 6.10 and later); the clones' PSS is measured both ways too. With --prefetch abc a third
mode, `--no-prefault` (the working set read in but not mapped in KVM ahead), runs interleaved
with the other two, so what the pre-fault gains is measured on its own.

Ratios: cold / wisp restore (target >= 20x), QEMU restore / wisp restore (target >= 5x),
sum of the clones' PSS / (clones x RSS of one clone) (target << 1). JSON to --out, a table on
stdout, the environment named (in the nested testbed, times are emulator times: compare ratios).
Run it inside tests/testbed/run where the host has no hardware KVM.
"""
import argparse
import json
import os
import resource
import struct
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from goals import print_verdicts  # noqa: E402
from vmrun import (environment_name, json_lines, log, qemu_microvm_argv,  # noqa: E402
                   smaps_rollup, stage, summarize, write_json)
from wisp_cli import (BenchError, check_result, disk_bytes, invoke, peer_cmdline,  # noqa: E402
                      run, template_create)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTFS_ARGS = "root=/dev/vda ro rootfstype=ext4 init=/usr/sbin/wisp-agent"  # vmm/main/rootfs_boot.h
PAYLOAD = b"hello snapshot\n"

# name -> how the handler is run and what its first result must be.
HANDLERS = {
    "exec": {"mode": "exec", "argv": ["cat"], "expect": PAYLOAD, "rootfs": False},
    "python": {"mode": "worker", "argv": ["/usr/bin/python3", "/usr/lib/wisp/python_worker.py"],
               "expect": PAYLOAD.upper(), "rootfs": True},
    # Not run by default: a warm worker on the initramfs guest (no rootfs needed).
    "shell-worker": {"mode": "worker", "argv": ["/bin/wisp-shell-worker", "cat"],
                     "expect": PAYLOAD, "rootfs": False},
}


def wisp_cmdline(wisp, rootfs):
    """wisp's default kernel line, so QEMU's guest gets the same one."""
    line = peer_cmdline(wisp)
    return line + " " + ROOTFS_ARGS if rootfs else line


# ---------------------------------------------------------------------------------------- wisp

def wisp_has(wisp, *words):
    """True when `wisp WORDS... --help` is a known command of this wisp."""
    p = subprocess.run([wisp, *words, "--help"], capture_output=True, text=True)
    text = (p.stdout + p.stderr).lower()
    return p.returncode == 0 and "unknown command" not in text


def require_wisp_commands(wisp):
    missing = [" ".join(w) for w in (("template",), ("invoke",), ("snapshot", "restore"))
               if not wisp_has(wisp, *w)]
    if missing:
        raise BenchError(f"{wisp} lacks the command(s) {', '.join(missing)}: build a wisp with "
                         f"snapshots (make), or run with --skip-wisp to measure only QEMU")


def vm_args(args, h):
    a = ["--mem", str(args.mem), "--vcpus", "1", "--kernel", args.kernel]
    return a + (["--rootfs", args.rootfs] if h["rootfs"] else ["--initrd", args.initrd])


def wisp_template(args, env, name, h):
    r = template_create(args.wisp, env, name, h["argv"], h["mode"], args.warmup, vm_args(args, h))
    t = r["timings"]
    tdir = find_template_dir(env["WISP_HOME"], name, args.template_dir)
    return {"create_wall_ms": r["create_wall_ms"], "snapshot_ms": t.get("snapshot_ms"),
            "memory_file_bytes": t.get("memory_file_bytes"),
            "memory_disk_bytes": t.get("memory_disk_bytes"),
            "dir": tdir, "dir_disk_bytes": disk_bytes(tdir) if tdir else None, "timings": t}


def working_set_pages(tdir):
    """Pages in the snapshot's working-set file (snapshot/working_set.h), None without one."""
    try:
        with open(os.path.join(tdir, "working-set"), "rb") as f:
            data = f.read()
    except (OSError, TypeError):
        return None
    if data[:8] != b"WISPWSET" or len(data) < 32:
        return None
    n = struct.unpack_from("<I", data, 12)[0]
    return sum(struct.unpack_from("<QQ", data, 24 + 16 * i)[1] for i in range(n))


NO_PREFAULT = "no-prefault"  # a prefetch mode: the working set read in, not mapped in KVM


def invoke_counted(args, env, tname, h, prefetch, ws_pages):
    """One `wisp invoke` (prefetch True, False, or NO_PREFAULT) with the page faults of its
    process tree and the pages it first touched on the critical path (not prefetched)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    extra = {True: (), False: ("--no-prefetch",), NO_PREFAULT: ("--no-prefault",)}[prefetch]
    r = invoke(args.wisp, env, tname, PAYLOAD, h["expect"], extra_args=extra)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r["minor_faults"] = after.ru_minflt - before.ru_minflt
    r["major_faults"] = after.ru_majflt - before.ru_majflt
    for k in ("exits", "nested_page_faults"):
        if r.get(k) is not None and r[k] < 0:
            r[k] = None  # the clone's KVM keeps no statistics
    touched = r.get("pages_touched")
    if touched is not None:
        r["pages_not_prefetched"] = max(0, touched - (ws_pages or 0)) if prefetch else touched
    return r


MODE_LABEL = {True: "prefetch", False: "no prefetch", NO_PREFAULT: "no prefault"}
MODE_KEY = {True: "restore", False: "restore_no_prefetch", NO_PREFAULT: "restore_no_prefault"}
RESTORE_KEYS = ("total_ms", "restore_ms", "reconnect_ms", "invoke_ms", "pages_touched",
                "pages_not_prefetched", "minor_faults", "major_faults", "exits",
                "nested_page_faults", "wall_ms")


def find_template_dir(home, name, override):
    """The snapshot directory of template `name` under WISP_HOME (layout owned by wisp)."""
    if override:
        return override.replace("{name}", name)
    best = None
    for d, _, files in os.walk(home, followlinks=True):  # templates/NAME is a symlink
        if name in os.path.relpath(d, home).split(os.sep) or os.path.basename(d) == name:
            if any("mem" in f for f in files) and (best is None or len(d) > len(best)):
                best = d
    return best


def wisp_cold(args, h):
    """`wisp exec` on a fresh boot: spawn -> first result (exec's invoke-done time)."""
    argv = [args.wisp, "exec", "--timings", "--timeout", "60", "--boot-timeout", "300",
            *vm_args(args, h)]
    if h["mode"] == "worker":
        argv += ["--mode", "worker"]
    argv += ["--", *h["argv"]]
    t0 = time.monotonic()
    p = run(argv, PAYLOAD, timeout=900, what="cold wisp exec")
    wall = (time.monotonic() - t0) * 1000
    check_result("cold wisp exec", p.stdout, h["expect"])
    t = json_lines(p.stderr.decode(errors="replace"))
    return {"first_result_ms": t.get("exec_invoke_done_ms"), "wall_ms": wall,
            "agent_ready_ms": t.get("exec_agent_ready_ms")}


def process_tree(pid):
    """pid and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def memory_of(pid):
    """Rss/Pss (KiB) of a VM: its process and descendants (a VMM may fork a jailed child)."""
    tot = {"Rss": 0, "Pss": 0, "Shared_Clean": 0, "Private_Dirty": 0, "Pss_Anon": 0,
           "Pss_File": 0, "Pss_Shmem": 0}
    for p in process_tree(pid):
        m = smaps_rollup(p)
        for k in tot:
            tot[k] += m.get(k, 0)
    return tot


def wisp_clones(args, env, tdir, h, tmp, prefetch=True):
    """--clones concurrent restores of one template; each must answer; then their memory."""
    procs = []
    try:
        for i in range(args.clones):
            # A socket of its own per batch: a killed VMM leaves its socket file, and a VMM
            # refuses to bind over one (it cannot tell a stale file from a live VM's).
            sock = os.path.join(tmp, f"clone{i}{'' if prefetch else '-np'}.sock")
            procs.append((subprocess.Popen(
                [args.wisp, "snapshot", "restore", tdir, "--vsock-uds", sock, "--console",
                 "none"] + ([] if prefetch else ["--no-prefetch"])
                # A snapshot names no host file: the caller gives its drive (the rootfs).
                + (["--drive", args.rootfs + ",ro"] if h["rootfs"] else []), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=env), sock))
        for i, (p, sock) in enumerate(procs):
            argv = [args.wisp, "exec", "--attach", sock, "--resumed", "--boot-timeout", "120"]
            if h["mode"] == "worker":
                argv += ["--mode", "worker", "--keep-worker"]
            try:
                r = run(argv + ["--", *h["argv"]], PAYLOAD, timeout=300,
                        what=f"clone {i}: wisp exec --attach")
            except BenchError:
                if p.poll() is not None:
                    raise BenchError(f"clone {i} (wisp snapshot restore) exited with rc "
                                     f"{p.returncode}: {p.stderr.read().decode()[-2000:]}")
                raise
            check_result(f"clone {i}", r.stdout, h["expect"])
        time.sleep(0.5)
        mem = [memory_of(p.pid) for p, _ in procs]
    finally:
        for p, _ in procs:
            p.kill()
        for p, sock in procs:
            p.wait()
            if os.path.exists(sock):
                os.unlink(sock)
    rss = [m["Rss"] for m in mem]
    pss = [m["Pss"] for m in mem]
    return {"clones": args.clones, "per_clone_kib": mem, "sum_rss_kib": sum(rss),
            "sum_pss_kib": sum(pss), "median_rss_kib": statistics.median(rss),
            "median_pss_kib": statistics.median(pss),
            # A lone clone's PSS is its RSS: this is "N x one clone" in the target.
            "pss_sum_over_n_x_rss": sum(pss) / (len(rss) * statistics.median(rss))}


# ---------------------------------------------------------------------------------------- QEMU

class Qmp:
    """A minimal QMP client over a Unix socket."""

    def __init__(self, path, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise BenchError(f"QEMU's QMP socket {path} did not come up")
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError("QEMU closed its QMP socket")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, **arguments):
        msg = {"execute": cmd}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
            elif "error" in r:
                raise BenchError(f"QMP {cmd}: {r['error'].get('desc')}")
            elif "return" in r:
                return r["return"]

    def close(self):
        self.sock.close()


def qemu_argv(args, h, tmp, extra):
    console = os.path.join(tmp, "qemu-console.log")
    argv = qemu_microvm_argv(args.qemu, args.kernel, args.mem, serial="file:" + console,
                             acpi=False)
    argv += ["-append", wisp_cmdline(args.wisp, h["rootfs"]),
             "-device", f"vhost-vsock-device,guest-cid={args.qemu_cid}",
            # The saved run state is not sent: the destination runs as soon as it has loaded
            # the migration stream (autostart), with no monitor round trip for `cont`.
            "-global", "migration.store-global-state=off"]
    if h["rootfs"]:
        argv += ["-drive", f"file={args.rootfs},if=none,id=vda,format=raw,readonly=on",
                 "-device", "virtio-blk-device,drive=vda"]
    else:
        argv += ["-initrd", args.initrd]
    return argv + extra


def attach_argv(args, h, resumed, repeat=1, keep_worker=True):
    # A worker's first call also waits for its start (perf/ml_bench.py's: imports, training).
    argv = [args.wisp, "exec", "--attach", f"vsock:{args.qemu_cid}", "--timings",
            "--boot-timeout", "300", "--timeout", str(getattr(args, "call_timeout", 60))]
    if resumed:
        argv.append("--resumed")
    if repeat > 1:
        argv += ["--repeat", str(repeat)]
    if h["mode"] == "worker":
        argv += ["--mode", "worker"] + (["--keep-worker"] if keep_worker else [])
    return argv + ["--", *h["argv"]]


def stop_vm(p):
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait()


def check_expected(what, out, h):
    """h["check"](what, out) when the handler has one (perf/ml_bench.py's results are
    validated, not compared with fixed bytes), else out must be h["expect"]."""
    if h.get("check"):
        h["check"](what, out)
    else:
        check_result(what, out, h["expect"])


def qemu_save(args, h, tmp, path, payload=None):
    """Boots QEMU, warms the handler up (`payload` --warmup times, default PAYLOAD, whose
    answer must be h["warm_expect"] when given), stops the VM and migrates it to `path`."""
    qmp_path = os.path.join(tmp, "qmp-src.sock")
    vm = subprocess.Popen(qemu_argv(args, h, tmp, ["-qmp", f"unix:{qmp_path},server=on,wait=off"]),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        r = run(attach_argv(args, h, resumed=False, repeat=args.warmup),
                PAYLOAD if payload is None else payload, timeout=900,
                what="QEMU source: boot and warm-up through wisp exec --attach vsock")
        check_result("QEMU source", r.stdout, h.get("warm_expect", h["expect"]))
        boot_ms = (time.monotonic() - t0) * 1000
        qmp = Qmp(qmp_path)
        t0 = time.monotonic()
        qmp.execute("stop")
        qmp.execute("migrate", uri=f"exec:cat > {shlex.quote(path)}")
        while True:
            st = qmp.execute("query-migrate")
            status = st.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                raise BenchError(f"QEMU migration to {path} {status}: {st.get('error-desc')}")
            time.sleep(0.005)
        save_ms = (time.monotonic() - t0) * 1000
        try:
            qmp.execute("quit")
        except (BenchError, OSError):
            pass
        qmp.close()
        vm.wait(timeout=60)
    finally:
        stop_vm(vm)
    return {"boot_and_warmup_ms": boot_ms, "save_ms": save_ms,
            "migration_file_bytes": os.path.getsize(path),
            "migration_disk_bytes": disk_bytes(path),
            "migrate_stats": {k: st.get("ram", {}).get(k) for k in
                              ("transferred", "normal", "duplicate", "total")}}


def watch_resume(qmp_path, t0, out):
    """Thread: records when QEMU reports the VM running again (QMP RESUME event)."""
    try:
        qmp = Qmp(qmp_path, timeout=300)
        while not any(e.get("event") == "RESUME" for e in qmp.events):
            if qmp.execute("query-status").get("running"):
                break
            msg = qmp._read()
            if "event" in msg:
                qmp.events.append(msg)
        out["running_ms"] = (time.monotonic() - t0) * 1000
        qmp.close()
    except (BenchError, OSError, ValueError):
        pass


def qemu_restore(args, h, tmp, path, payload=None):
    """One restore: spawn QEMU on the migration file -> resumed -> first result (of `payload`,
    default PAYLOAD)."""
    qmp_path = os.path.join(tmp, "qmp-dst.sock")
    t0 = time.monotonic()
    vm = subprocess.Popen(qemu_argv(args, h, tmp, ["-incoming", f"exec:cat {shlex.quote(path)}",
                                                   "-qmp", f"unix:{qmp_path},server=on,wait=off"]),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    resume = {}
    watcher = threading.Thread(target=watch_resume, args=(qmp_path, t0, resume), daemon=True)
    watcher.start()
    try:
        t_exec = time.monotonic()
        p = subprocess.run(attach_argv(args, h, resumed=True),
                           input=PAYLOAD if payload is None else payload,
                           capture_output=True, timeout=300)
        wall = (time.monotonic() - t0) * 1000
        if p.returncode != 0:
            qerr = vm.stderr.read().decode(errors="replace") if vm.poll() is not None else ""
            raise BenchError(f"QEMU restore: wisp exec --attach vsock failed (rc="
                             f"{p.returncode}):\n{p.stderr.decode(errors='replace')[-2000:]}"
                             f"{qerr[-2000:]}")
        check_expected("QEMU restore", p.stdout, h)
        t = json_lines(p.stderr.decode(errors="replace"))
        off = (t_exec - t0) * 1000
        watcher.join(timeout=5)
        return {"first_result_ms": off + t["exec_invoke_done_ms"], "wall_ms": wall,
                "running_ms": resume.get("running_ms"),
                "connected_ms": off + t["exec_agent_connected_ms"],
                "agent_ready_ms": off + t["exec_agent_ready_ms"]}
    finally:
        stop_vm(vm)


# ---------------------------------------------------------------------------------------- main

def spread(i, k, n):
    """True at k of the n rounds 0..n-1, evenly spread (the first round included): where a
    kind of run that happens k times goes among n rounds."""
    return k > 0 and (i * k) % n < k


def bench_handler(args, name, h, tmp):
    """The template (and QEMU's migration file) first, then rounds in which wisp's restores
    (each prefetch mode), the cold starts and QEMU's restores alternate (issue 15 item 3: drift
    of a noisy host falls on all alike; the order turns round every round), then the clones."""
    res = {"handler": shlex.join(h["argv"]), "mode": h["mode"]}
    env = dict(os.environ, WISP_HOME=os.path.join(tmp, "wisp-home"))
    tname = f"snapbench-{name}"
    qpath = os.path.join(tmp, f"qemu-{name}.mig")
    modes = {"ab": (True, False), "abc": (True, False, NO_PREFAULT), "on": (True,),
             "off": (False,)}[args.prefetch]
    ws_pages = None
    if not args.skip_wisp:
        subprocess.run([args.wisp, "template", "rm", tname], env=env, capture_output=True)
        log(f"[{name}] wisp template create")
        res["template"] = wisp_template(args, env, tname, h)
        ws_pages = working_set_pages(res["template"]["dir"])
        res["template"]["working_set_pages"] = ws_pages
    if not args.skip_qemu:
        log(f"[{name}] QEMU: boot, warm up, stop, migrate to {qpath}")
        res["qemu_save"] = qemu_save(args, h, tmp, qpath)
    n_wisp = 0 if args.skip_wisp else args.runs
    n_cold = 0 if args.skip_wisp else args.cold_runs
    n_qemu = 0 if args.skip_qemu else args.qemu_runs
    rounds = max(n_wisp, n_cold, n_qemu)
    runs = {m: [] for m in modes}
    cold, qruns, after_cold = [], [], []
    for i in range(rounds):
        steps = []
        if i < n_wisp:
            steps += [("wisp", m) for m in modes]
        if spread(i, n_cold, rounds):
            steps.append(("cold", None))
        if spread(i, n_qemu, rounds):
            steps.append(("qemu", None))
        for kind, m in (steps if i % 2 == 0 else steps[::-1]):
            if kind == "wisp":
                runs[m].append(invoke_counted(args, env, tname, h, m, ws_pages))
            elif kind == "cold":
                cold.append(wisp_cold(args, h))
                log(f"[{name}] cold wisp exec {len(cold)}/{n_cold}: "
                    f"{cold[-1]['first_result_ms']:.0f} ms")
                # One more restore right after it, kept apart: issue 13 saw warm calls slow
                # down right after a cold start (against warm_in_row below).
                after_cold.append(invoke_counted(args, env, tname, h, modes[0], ws_pages))
            else:
                qruns.append(qemu_restore(args, h, tmp, qpath))
                log(f"[{name}] QEMU restore {len(qruns)}/{n_qemu}: "
                    f"{qruns[-1]['first_result_ms']:.1f} ms")
        if i < n_wisp and ((i + 1) % 10 == 0 or i + 1 == n_wisp):
            log(f"[{name}] wisp invoke {i + 1}/{n_wisp}: total " + ", ".join(
                f"{runs[m][-1]['total_ms']:.1f} ms ({MODE_LABEL[m]})"
                for m in modes))
    if not args.skip_wisp:
        for m in modes:
            # The first mode's rows are "restore" (what the rest of the report compares).
            key = "restore" if m == modes[0] else MODE_KEY[m]
            res[key] = {k: summarize([r.get(k) for r in runs[m]]) for k in RESTORE_KEYS}
            res[key]["prefetch"] = m
            res[key + "_samples"] = runs[m]
        res["cold"] = {k: summarize([c[k] for c in cold]) for k in
                       ("first_result_ms", "wall_ms", "agent_ready_ms")}
        res["cold_samples"] = cold
        if after_cold:
            # As many restores in a row, nothing else between them: the baseline.
            in_row = [invoke_counted(args, env, tname, h, modes[0], ws_pages)
                      for _ in range(max(len(after_cold), 3))]
            for key, samples in (("after_cold", after_cold), ("warm_in_row", in_row)):
                res[key] = {k: summarize([r.get(k) for r in samples]) for k in RESTORE_KEYS}
                res[key + "_samples"] = samples
        if args.clones > 0:
            tdir = res["template"]["dir"]
            if not tdir:
                raise BenchError(f"cannot find template {tname}'s snapshot directory under "
                                 f"{env['WISP_HOME']}; pass --template-dir")
            log(f"[{name}] {args.clones} concurrent clones of {tdir}")
            res["clones"] = wisp_clones(args, env, tdir, h, tmp, args.prefetch != "off")
            if args.prefetch == "ab":
                log(f"[{name}] {args.clones} concurrent clones, --no-prefetch")
                res["clones_no_prefetch"] = wisp_clones(args, env, tdir, h, tmp, False)
        subprocess.run([args.wisp, "template", "rm", tname], env=env, capture_output=True)
    if not args.skip_qemu:
        res["qemu_restore"] = {k: summarize([r[k] for r in qruns]) for k in
                               ("first_result_ms", "running_ms", "connected_ms",
                                "agent_ready_ms", "wall_ms")}
        res["qemu_restore_samples"] = qruns
        os.unlink(qpath)

    def med(section, key):
        return ((res.get(section) or {}).get(key) or {}).get("median")

    def ratio(a, b):
        return a / b if a and b else None

    # wisp's total_ms is its own restore -> first result; wall_ms adds the `wisp invoke`
    # process's start and exit (the conservative ratio: QEMU's times start at its spawn).
    w, ww = med("restore", "total_ms"), med("restore", "wall_ms")
    c = med("cold", "first_result_ms")
    q = med("qemu_restore", "first_result_ms")
    res["ratios"] = {"cold_over_restore": ratio(c, w), "qemu_over_restore": ratio(q, w),
                     "cold_over_restore_wall": ratio(c, ww), "qemu_over_restore_wall": ratio(q, ww)}
    res["ratios"]["after_cold_over_in_row"] = ratio(med("after_cold", "total_ms"),
                                                    med("warm_in_row", "total_ms"))
    if res.get("restore_no_prefault"):
        res["ratios"]["no_prefault_over_prefetch"] = ratio(med("restore_no_prefault", "total_ms"), w)
    if res.get("restore_no_prefetch"):
        res["ratios"]["no_prefetch_over_prefetch"] = ratio(med("restore_no_prefetch", "total_ms"), w)
        res["ratios"]["critical_pages_prefetch_over_no_prefetch"] = ratio(
            med("restore", "pages_not_prefetched"), med("restore_no_prefetch", "pages_not_prefetched"))
    return res


def fmt(v, unit="ms", width=10):
    if v is None:
        return f"{'-':>{width}}"
    return f"{v:>{width}.1f}" if unit == "ms" else f"{v:>{width}.0f}"


def print_table(report):
    env = report["environment"]
    print(f"\nsnapshot restore on {env}")
    print(f"  {report['mem_mib']} MiB, 1 vCPU; {report['runs']} restores, "
          f"{report['cold_runs']} cold starts per handler")
    if report["cold_runs"] < report["runs"] and not report["skip_wisp"]:
        print(f"  (cold starts: {report['cold_runs']} runs, fewer than restores: each boots a VM)")
    for name, r in report["handlers"].items():
        if "skipped" in r:
            print(f"\n  [{name}] skipped: {r['skipped']}")
            continue
        print(f"\n  [{name}] {r['mode']} handler: {r['handler']}")
        print(f"    {'':34} {'median':>10} {'p99':>10}")
        rows = [("wisp restore -> first result", r.get("restore", {}).get("total_ms")),
                ("  restore", r.get("restore", {}).get("restore_ms")),
                ("  reconnect", r.get("restore", {}).get("reconnect_ms")),
                ("  invoke", r.get("restore", {}).get("invoke_ms")),
                ("`wisp invoke` spawn -> exit", r.get("restore", {}).get("wall_ms")),
                ("wisp cold start -> first result", r.get("cold", {}).get("first_result_ms")),
                ("QEMU restore -> first result", r.get("qemu_restore", {}).get("first_result_ms")),
                ("  -> VM running (QMP RESUME)", r.get("qemu_restore", {}).get("running_ms")),
                ("  -> agent connected", r.get("qemu_restore", {}).get("connected_ms")),
                ("wisp restore right after a cold", (r.get("after_cold") or {}).get("total_ms")),
                ("wisp restores in a row", (r.get("warm_in_row") or {}).get("total_ms"))]
        for label, s in rows:
            if s:
                print(f"    {label:34} {fmt(s['median'])} {fmt(s['p99'])} ms")
        for key, label in (("restore", "prefetch"), ("restore_no_prefetch", "no prefetch"),
                           ("restore_no_prefault", "no prefault")):
            s = r.get(key)
            if not s or "restore_no_prefetch" not in r:
                continue
            cells = [fmt((s.get(k) or {}).get("median"), unit)
                     for k, unit in (("total_ms", "ms"), ("restore_ms", "ms"), ("invoke_ms", "ms"),
                                     ("pages_touched", "n"), ("pages_not_prefetched", "n"),
                                     ("minor_faults", "n"), ("major_faults", "n"),
                                     ("exits", "n"), ("nested_page_faults", "n"))]
            if label == "prefetch":
                print(f"    {'medians':14} {'first res':>10} {'restore':>10} {'invoke':>10} "
                      f"{'pages':>10} {'crit pages':>10} {'minflt':>10} {'majflt':>10} "
                      f"{'exits':>10} {'EPT/NPT':>10}")
            print(f"    {label:14} " + " ".join(cells))
        if r.get("restore_no_prefetch"):
            ra = r["ratios"]
            print(f"    no prefetch / prefetch (first result): "
                  f"{ra['no_prefetch_over_prefetch'] or 0:.2f}x; critical-path pages "
                  f"prefetch / no prefetch: {ra['critical_pages_prefetch_over_no_prefetch'] or 0:.2f}; "
                  f"working set {r['template'].get('working_set_pages')} pages")
        if r.get("restore_no_prefault"):
            print(f"    no prefault / prefetch (first result): "
                  f"{r['ratios']['no_prefault_over_prefetch'] or 0:.2f}x")
        pt = r.get("restore", {}).get("pages_touched")
        if pt:
            print(f"    pages touched by a restore: median {pt['median']:.0f} "
                  f"({pt['median'] * 4 / 1024:.1f} MiB), p99 {pt['p99']:.0f}")
        t = r.get("template")
        if t:
            print(f"    template create: snapshot {fmt(t['snapshot_ms']).strip()} ms "
                  f"(whole command {t['create_wall_ms']:.0f} ms); memory file "
                  f"{mib(t['memory_file_bytes'])} MiB, on disk {mib(t['memory_disk_bytes'])} MiB")
        qs = r.get("qemu_save")
        if qs:
            print(f"    QEMU migration file: {mib(qs['migration_file_bytes'])} MiB "
                  f"(on disk {mib(qs['migration_disk_bytes'])} MiB), save {qs['save_ms']:.0f} ms")
        ra = r["ratios"]
        for key, label, target in (("cold", "cold / restore", 20), ("qemu", "QEMU / restore", 5)):
            if ra[f"{key}_over_restore"]:
                print(f"    {label}: {ra[f'{key}_over_restore']:7.1f}x (target >= {target}x); "
                      f"against `wisp invoke`'s whole process: "
                      f"{ra[f'{key}_over_restore_wall']:.1f}x")
        for ckey, clabel in (("clones", ""), ("clones_no_prefetch", " (--no-prefetch)")):
            cl = r.get(ckey)
            if not cl:
                continue
            print(f"    {cl['clones']} clones{clabel}: sum PSS {cl['sum_pss_kib'] / 1024:.1f} MiB, "
                  f"sum RSS {cl['sum_rss_kib'] / 1024:.1f} MiB, one clone RSS "
                  f"{cl['median_rss_kib'] / 1024:.1f} MiB; sum PSS / ({cl['clones']} x one) = "
                  f"{cl['pss_sum_over_n_x_rss']:.2f} (target << 1)")
    print(f"\n  JSON: {report['out']}")


def mib(b):
    return "-" if b is None else f"{b / (1 << 20):.1f}"


def stage_files(args, tmp):
    """Copies wisp (with its bin/ siblings) and the guest files off the testbed's 9p share
    (vmrun.stage). QEMU comes from the host root, which is cached; both VMMs then read the
    same staged files."""
    files = {attr: getattr(args, attr) for attr in ("kernel", "initrd", "rootfs")}
    bin_dir = stage(os.path.dirname(os.path.abspath(args.wisp)), files.values(), tmp)
    args.wisp = os.path.join(bin_dir, os.path.basename(args.wisp))
    staged = [attr for attr, src in files.items() if os.path.isfile(src)]
    for attr in staged:
        setattr(args, attr, os.path.join(tmp, "guest", os.path.basename(files[attr])))
    log(f"snapshot_bench: staged wisp and {', '.join(staged)} in {tmp} (testbed: off the 9p share)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50, help="restores per handler and VMM")
    ap.add_argument("--cold-runs", type=int, default=10, help="cold starts per handler")
    ap.add_argument("--qemu-runs", type=int, default=None,
                    help="QEMU restores per handler (default: --runs)")
    ap.add_argument("--clones", type=int, default=20, help="concurrent clones (0: skip)")
    ap.add_argument("--warmup", type=int, default=3, help="handler calls before the snapshot")
    ap.add_argument("--handlers", default="exec,python",
                    help="comma list of: exec, python, shell-worker")
    ap.add_argument("--prefetch", choices=("ab", "abc", "on", "off"), default="ab",
                    help="restores with the working set prefetched, without, or both "
                         "interleaved (default); abc: and a third, prefetched but not "
                         "mapped in KVM ahead (--no-prefault)")
    ap.add_argument("--skip-qemu", action="store_true")
    ap.add_argument("--skip-wisp", action="store_true", help="measure only QEMU")
    ap.add_argument("--wisp", default=os.path.join(ROOT, "build/bin/wisp"))
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--qemu-cid", type=int, default=42, help="guest CID of the QEMU VMs")
    ap.add_argument("--kernel", default=os.path.join(ROOT, "build/guest/vmlinux"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "build/guest/agent-initramfs.cpio.gz"))
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build/guest/python-rootfs.ext4"))
    ap.add_argument("--mem", type=int, default=256, help="guest MiB")
    ap.add_argument("--template-dir", help="a template's snapshot dir ({name}: its name), if "
                    "not found under WISP_HOME")
    ap.add_argument("--tmp", help="work directory (default: a new one in TMPDIR)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/perf/snapshot.json"))
    ap.add_argument("--no-stage", action="store_true",
                    help="in the testbed, run wisp and the guest files from the checkout")
    args = ap.parse_args()
    if args.qemu_runs is None:
        args.qemu_runs = args.runs

    for path, what in ((args.wisp, "wisp (make)"), (args.kernel, "guest kernel (make guest)"),
                       (args.initrd, "agent initramfs (make guest)")):
        if not os.path.exists(path):
            log(f"snapshot_bench: {path} is missing: build the {what}")
            return 2
    if not args.skip_wisp:
        try:
            require_wisp_commands(args.wisp)
        except BenchError as e:
            log(f"snapshot_bench: {e}")
            return 2
    if not args.skip_qemu:
        if not shutil.which(args.qemu):
            log(f"snapshot_bench: {args.qemu} not found (apt-get install qemu-system-x86), "
                f"or pass --skip-qemu")
            return 2
        if not os.path.exists("/dev/vhost-vsock"):
            log("snapshot_bench: /dev/vhost-vsock is missing (modprobe vhost_vsock): QEMU's "
                "guest cannot be reached; pass --skip-qemu")
            return 2

    env_name = environment_name()
    names = [n.strip() for n in args.handlers.split(",") if n.strip()]
    for n in names:
        if n not in HANDLERS:
            log(f"snapshot_bench: unknown handler {n!r} (known: {', '.join(HANDLERS)})")
            return 2
    log(f"snapshot_bench: {args.runs} restores, {args.cold_runs} cold starts, {args.clones} "
        f"clones per handler ({', '.join(names)}), {args.mem} MiB, on {env_name}")
    report = {"benchmark": "snapshot", "environment": env_name, "mem_mib": args.mem, "vcpus": 1,
              "runs": args.runs, "cold_runs": args.cold_runs, "clones": args.clones,
              "warmup": args.warmup, "prefetch": args.prefetch, "payload": PAYLOAD.decode(), "skip_wisp": args.skip_wisp,
              "kernel": args.kernel,
              "initrd": args.initrd, "rootfs": args.rootfs, "out": args.out, "handlers": {}}
    tmp = args.tmp or tempfile.mkdtemp(prefix="wisp-snapshot-bench-")
    os.makedirs(tmp, exist_ok=True)
    if os.environ.get("WISP_TESTBED") and not args.no_stage:
        stage_files(args, tmp)
        report["staged"] = tmp
    rc = 0
    try:
        for name in names:
            h = HANDLERS[name]
            if h["rootfs"] and not os.path.exists(args.rootfs):
                msg = (f"the Python rootfs {args.rootfs} is missing (guest/build-rootfs.sh); "
                       f"no {name} rows")
                log(f"snapshot_bench: {msg}")
                report["handlers"][name] = {"skipped": msg}
                continue
            try:
                report["handlers"][name] = bench_handler(args, name, h, tmp)
            except (BenchError, subprocess.TimeoutExpired) as e:
                log(f"snapshot_bench: [{name}] {e}")
                report["handlers"][name] = {"skipped": f"failed: {str(e)[:500]}"}
                rc = 1
    finally:
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    write_json(args.out, report)
    print_table(report)
    print_verdicts(report, "snapshot.json")
    return rc


if __name__ == "__main__":
    sys.exit(main())
