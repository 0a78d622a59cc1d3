"""Launch one VMM process (wisp or a peer), time it, and sample its memory.

Shared by the benchmarks, the demo and the integration tests, with the statistics, staging and
result-file helpers they all use. Times are taken on the host side: t0 just before the process
is spawned, then the moment a marker line appears on the guest console (its stdout) and the
moment the process exits.
"""
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def pct(values, p):
    """The p-th percentile by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def summarize(vals):
    """Median, percentiles and range of the values that are not None (None if there are none)."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "p50": pct(vals, 50), "p90": pct(vals, 90),
            "p99": pct(vals, 99), "min": min(vals), "max": max(vals), "n": len(vals)}


def json_lines(text):
    """Merges every JSON object line of a --timings stderr."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                out.update(json.loads(line))
            except ValueError:
                pass
    return out


def log(msg):
    """A progress line on stderr (stdout is for results)."""
    print(msg, file=sys.stderr, flush=True)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit(root=ROOT):
    """The checkout's commit (with -dirty for local changes), or None outside a checkout."""
    try:
        p = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty", "--abbrev=40"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def kernel_version(path):
    """The "Linux version ..." banner in an uncompressed vmlinux, or None."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    i = data.find(b"Linux version ")
    if i < 0:
        return None
    end = min(x for x in (data.find(b"\n", i), data.find(b"\0", i), i + 300) if x >= 0)
    return data[i:end].decode(errors="replace").strip()


def qemu_version(qemu="qemu-system-x86_64"):
    """The peer's version line (`qemu-system-x86_64 --version`), or None."""
    try:
        p = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.splitlines()[0].strip() if p.returncode == 0 and p.stdout else None


def run_meta(report):
    """What a figure made from `report` must name: the environment, the wisp commit, the guest
    kernel and the peer's version (issue 15). The kernel a benchmark booted may have been a
    staged copy gone by now: then the checkout's build/guest/vmlinux, which it was copied from."""
    kernel = report.get("kernel") or (report.get("setup") or {}).get("kernel")
    default = os.path.join(ROOT, "build/guest/vmlinux")
    version = kernel_version(kernel) if kernel else None
    return {"environment": report.get("environment") or environment_name(),
            "commit": git_commit(), "kernel": version or kernel_version(default),
            "kernel_path": kernel if version else default, "qemu": qemu_version()}


def write_json(path, report):
    """Writes a benchmark's report to `path`, creating its directory, with run_meta's "meta"."""
    report.setdefault("meta", run_meta(report))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


def stage(bin_dir, guest_files, dest):
    """Copies every file of a build's `bin_dir` (wisp and the binaries it runs beside itself)
    into dest/bin and each of `guest_files` that exists into dest/guest; returns dest/bin.

    In the nested testbed the checkout is a 9p share without a lasting page cache: every first
    touch of a page of a binary or an image is a 9p round trip, which a host with the files on
    a local disk never pays. wisp finds its default guest in <wisp>/../guest, as in build/.
    """
    out_bin, out_guest = os.path.join(dest, "bin"), os.path.join(dest, "guest")
    os.makedirs(out_bin, exist_ok=True)
    os.makedirs(out_guest, exist_ok=True)
    for name in os.listdir(bin_dir):
        src = os.path.join(bin_dir, name)
        if os.path.isfile(src):
            shutil.copy2(src, out_bin)
    for src in guest_files:
        if src and os.path.isfile(src):
            shutil.copy(src, out_guest)
    return out_bin


def stage_wisp(build, dest):
    """stage() of $WISP_BIN (default build/bin/wisp) with the default guest (vmlinux and both
    initramfs images of build/guest) into `dest`; returns the staged wisp's path."""
    wisp = os.environ.get("WISP_BIN", os.path.join(build, "bin/wisp"))
    guest = [os.path.join(build, "guest", f)
             for f in ["vmlinux", "initramfs.cpio.gz", "agent-initramfs.cpio.gz"]]
    return os.path.join(stage(os.path.dirname(wisp), guest, dest), os.path.basename(wisp))


def template_bench_workdir(args, name):
    """The start of a benchmark that makes templates of the default agent guest: checks that
    args.wisp, args.kernel and args.initrd exist (None: one is missing, logged), makes a temp
    directory with a WISP_HOME of its own and, in the testbed unless args.no_stage, stages wisp
    and the guest into it (off the 9p share), pointing args at the copies. Returns (tmp, env)."""
    for path in (args.wisp, args.kernel, args.initrd):
        if not os.path.exists(path):
            log(f"{name}: {path} is missing (make)")
            return None
    args.template_dir = None  # snapshot_bench.wisp_template's: find it under WISP_HOME
    tmp = tempfile.mkdtemp(prefix=f"wisp-{name.replace('_', '-')}-")
    env = dict(os.environ, WISP_HOME=os.path.join(tmp, "wisp-home"))
    if os.environ.get("WISP_TESTBED") and not args.no_stage:
        args.wisp = stage_wisp(os.path.join(ROOT, "build"), tmp)
        args.kernel = os.path.join(tmp, "guest", "vmlinux")
        args.initrd = os.path.join(tmp, "guest", "agent-initramfs.cpio.gz")
    return tmp, env


def wait_for(predicate, timeout, what, interval=0.2):
    """Polls `predicate` every `interval` s until it returns a true value, which is returned;
    AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def processes_named(name):
    """PIDs of this machine's processes whose executable (argv[0]'s base name) is `name`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(argv0) == name.encode():
            out.append(int(pid))
    return out


def qemu_microvm_argv(qemu, kernel, mem, vcpus=1, serial="stdio", acpi=True):
    """QEMU's microvm machine with KVM, the peer every benchmark compares wisp with: no
    firmware, no default devices, the console on `serial`. Callers add -initrd, -append and
    devices. acpi=False makes QEMU list its virtio-mmio devices on the kernel command line,
    which is how a guest kernel without ACPI finds them."""
    machine = "microvm,x-option-roms=off,isa-serial=on" + ("" if acpi else ",acpi=off")
    return [qemu, "-M", machine, "-enable-kvm", "-cpu", "host", "-m", str(mem),
            "-smp", str(vcpus), "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", serial, "-no-reboot", "-kernel", kernel]


def environment_name():
    """Which KVM the numbers come from, and its kernel (the testbed runs 6.1 or, with
    WISP_TESTBED_KERNEL, 6.12, whose KVM pre-faults a clone's working set); goes into every
    result."""
    kernel = os.uname().release
    if os.environ.get("WISP_TESTBED") == "1":
        return (f"testbed (KVM inside QEMU TCG with emulated SVM, kernel {kernel}; "
                "times are emulator times)")
    mods = [m for m in ("kvm_intel", "kvm_amd") if os.path.isdir(f"/sys/module/{m}")]
    return f"hardware KVM ({mods[0]}, kernel {kernel})" if mods else "unknown KVM"


def smaps_rollup(pid):
    """Every kB field of /proc/PID/smaps_rollup (Rss, Pss, Anonymous, ShmemPmdMapped, ...), in
    KiB; {} once the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, val = line.partition(":")
                if val.strip().endswith("kB"):
                    out[key] = int(val.split()[0])
    except OSError:
        pass
    return out


def read_rss(pid):
    """VmRSS split into anonymous, file and shared-memory pages, in KiB.

    QEMU's guest RAM is shared anonymous memory, counted in RssShmem, so RssAnon + RssFile is
    its own footprint without the guest's touched pages. wisp's `run` process is the jail's
    supervisor: the guest RAM (private anonymous memory, RssAnon) is in the jailed VMM, its
    child, so its figures here are its own already (perf/hugepage_bench.py reads the VMM's).
    """
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(val.split()[0])
    except OSError:
        pass
    return out


def guest_ram_smaps(pid, mem_mib):
    """The /proc/PID/smaps fields (KiB) of the VMM's guest RAM: its one mapping of exactly
    `mem_mib` MiB (a booted VM's anonymous RAM). The whole process's smaps_rollup also counts
    the VMM's own heaps, which the host may put on huge pages too (THP `always`)."""
    vmas, fields = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not line.split(":", 1)[0].isalpha():
                fields = {}
                vmas.append(fields)
            elif fields is not None and line.endswith("kB\n"):
                key, _, value = line.partition(":")
                fields[key] = int(value.split()[0])
    ram = [v for v in vmas if v.get("Size") == mem_mib * 1024]
    if len(ram) != 1:
        raise AssertionError(f"{len(ram)} mappings of {mem_mib} MiB in /proc/{pid}/smaps, "
                             "expected the guest RAM's one")
    return ram[0]


def run_vm(argv, marker, timeout=300, echo=None):
    """Runs argv; returns dict(marker_ms, exit_ms, rc, stdout, stderr, rss_kib, own_rss_kib).

    `echo` (a writable binary file) receives the console output as it arrives.
    """
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    out, err = bytearray(), bytearray()
    marker_b = marker.encode()
    marker_ms, rss = None, {}
    open_streams = 2
    while open_streams:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            proc.kill()
            break
        for key, _ in sel.select(timeout=left):
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            if key.data == "out":
                out += chunk
                if echo is not None:
                    echo.write(chunk)
                    echo.flush()
                if marker_ms is None and marker_b in out:
                    marker_ms = (time.monotonic() - t0) * 1000
                    rss = read_rss(proc.pid)
            else:
                err += chunk
    rc = proc.wait()
    exit_ms = (time.monotonic() - t0) * 1000
    own = rss.get("RssAnon", 0) + rss.get("RssFile", 0) if rss else None
    return {
        "marker_ms": marker_ms,
        "exit_ms": exit_ms,
        "rc": rc,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace"),
        "rss_kib": rss,
        "own_rss_kib": own,
    }
