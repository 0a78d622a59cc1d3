#!/usr/bin/env python3
"""containerd-shim-wisp-v2 under Debian's real containerd (issue 16, first layer).

The test starts a containerd of its own (its own config, root, state, sockets and shim socket
root under a temporary directory; nothing of a host containerd is touched), imports an OCI
image it builds here from /bin/busybox (no registry), and runs a container with
`ctr run --runtime io.containerd.wisp.v2`. No `wisp serve` runs here (that needs a guest, and
so the testbed and a template): the shim's Create reads the bundle's config.json, picks the
template (WISP_SHIM_TEMPLATE) and fails to reach serve. What is checked is the contract around
it, end to end with containerd's own Go ttrpc client: containerd finds the shim on PATH, runs
`start` and connects to the address it printed, sends Create over ttrpc and gets the shim's
status and message back (which ctr prints), then tears the shim down (Delete, Shutdown, the
delete command): no shim process and no shim socket are left. runc in the same containerd runs the same image, so
the image and the containerd set-up are known good.

From test_3 on, `wisp serve` runs with a template, and guests boot (testbed): the container's
output and exit code, streamed stdin and output (`ctr run` fed by a pipe), `ctr task exec`,
`pause`/`resume`, `kill` with signals and `delete`, the events containerd receives (`ctr
events`), a containerd restarted under a running task, and a killed shim whose sandbox goes.

Registered with ctest (label integration); run alone (in the testbed from test_3 on):
    python3 tests/integration/shim_containerd_test.py
"""
import hashlib
import io
import json
import os
import re
import shutil
import select
import signal
import subprocess
import tarfile
import tempfile
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from vmrun import processes_named, stage_wisp, wait_for  # noqa: E402

BUILD = os.path.join(ROOT, "build")
IMAGE = "docker.io/wisp-test/busybox:latest"


def blob(layout, data):
    """Stores `data` as a blob of the OCI layout; returns its descriptor fields."""
    digest = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def build_image(tar_path, image_name=IMAGE, extra_files=None):
    """An OCI image archive: one uncompressed layer with busybox as /bin/{busybox,sh,echo},
    plus `extra_files` ({path in the image: bytes}, 0644) when given."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as t:
        for path, data in (extra_files or {}).items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
        for d in ("bin", "tmp", "proc", "dev", "sys"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        t.add("/bin/busybox", arcname="bin/busybox")
        for name in ("sh", "echo"):
            info = tarfile.TarInfo("bin/" + name)
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(info)
    layer = layer_buf.getvalue()
    layout = tempfile.mkdtemp(prefix="wisp-oci-")
    try:
        layer_desc = blob(layout, layer)
        config = {
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/echo", "hello"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        config_desc = blob(layout, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(config_desc, mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": [dict(layer_desc, mediaType="application/vnd.oci.image.layer.v1.tar")],
        }
        manifest_desc = blob(layout, json.dumps(manifest).encode())
        index = {"schemaVersion": 2, "manifests": [dict(
            manifest_desc, mediaType="application/vnd.oci.image.manifest.v1+json",
            annotations={"io.containerd.image.name": image_name,
                         "org.opencontainers.image.ref.name": "latest"})]}
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump(index, f)
        with open(os.path.join(layout, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with tarfile.open(tar_path, "w") as t:
            for name in ("oci-layout", "index.json", "blobs"):
                t.add(os.path.join(layout, name), arcname=name)
    finally:
        shutil.rmtree(layout)


def shim_processes():
    return processes_named("containerd-shim-wisp-v2")


def vmm_files(pid):
    """The paths of the files process `pid` holds open or mapped ({} when it is gone)."""
    paths = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                paths.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                pass
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) == 6:
                    paths.add(fields[5].strip())
    except OSError:
        pass
    return paths


def vmms_of_template(home, name):
    """(VMMs running a clone of template `name` of the store under `home`, every wisp-vmm).

    A sandbox's VMM holds its template generation's snapshot files (the guest memory mapped,
    the state and drives open); serve's idle pool VMMs are wisp-vmm processes too, but have
    restored nothing, and so hold none: scanning /proc for the generation's directory tells the
    sandbox's VMM from them without asking serve."""
    generation = os.path.basename(os.path.realpath(os.path.join(home, "templates", name)))
    assert generation.startswith(f".{name}.gen-"), generation
    vmms = processes_named("wisp-vmm")
    return [pid for pid in vmms
            if any(f"/{generation}/" in path for path in vmm_files(pid))], vmms


class ShimContainerdTest(unittest.TestCase):
    # What the shims get in their environment beside the sockets (shim_rootfs_test.py runs
    # them without a fixed template).
    shim_env = {"WISP_SHIM_TEMPLATE": "hello"}
    image_files = {}  # files the test image has beside busybox ({path: bytes})

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wisp-ctrd-")
        cls.wisp = stage_wisp(BUILD, cls.tmp)
        cls.bin_dir = os.path.dirname(cls.wisp)
        shim = os.path.join(cls.bin_dir, "containerd-shim-wisp-v2")
        if not os.access(shim, os.X_OK):
            raise RuntimeError(f"{shim} is missing: build containerd-shim-wisp-v2 beside wisp")
        cls.serve_sock = os.path.join(cls.tmp, "serve.sock")
        cls.serve = None
        cls.sock = os.path.join(cls.tmp, "containerd.sock")
        cls.shim_root = os.path.join(cls.tmp, "shim-run")
        config = os.path.join(cls.tmp, "config.toml")
        with open(config, "w") as f:
            f.write(f"""version = 2
root = "{cls.tmp}/root"
state = "{cls.tmp}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{cls.sock}"
[ttrpc]
  address = "{cls.sock}.ttrpc"
[debug]
  address = "{cls.tmp}/debug.sock"
  level = "debug"
""")
        cls.config = config
        cls.log_path = os.path.join(cls.tmp, "containerd.log")
        cls.log = open(cls.log_path, "w")
        cls.start_containerd()
        image = os.path.join(cls.tmp, "image.tar")
        build_image(image, extra_files=cls.image_files)
        cls.ctr("images", "import", "--snapshotter", "native", image)

    @classmethod
    def start_containerd(cls):
        env = dict(os.environ)
        env["PATH"] = cls.bin_dir + ":" + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        # containerd passes its environment to the shims: their sockets go under the test's
        # directory instead of /run/containerd.
        env["WISP_SHIM_SOCKET_ROOT"] = cls.shim_root
        env.update(cls.shim_env)
        env["WISP_SERVER"] = cls.serve_sock  # started by the test that needs it
        cls.containerd = subprocess.Popen(["containerd", "--config", cls.config], env=env,
                                          stdout=cls.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if cls.containerd.poll() is not None:
                raise RuntimeError("containerd exited: " + cls.log_tail())
            if cls.ctr("version", check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("containerd did not answer: " + cls.log_tail())

    @classmethod
    def stop_containerd(cls):
        cls.containerd.send_signal(signal.SIGTERM)
        try:
            cls.containerd.wait(60)
        except subprocess.TimeoutExpired:
            cls.containerd.kill()
            cls.containerd.wait()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "serve", None):
            cls.serve.send_signal(signal.SIGTERM)
            try:
                cls.serve.wait(60)
            except subprocess.TimeoutExpired:
                cls.serve.kill()
                cls.serve.wait()
        if getattr(cls, "containerd", None):
            cls.stop_containerd()
        if getattr(cls, "log", None):
            cls.log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def log_tail(cls):
        with open(cls.log_path) as f:
            return f.read()[-3000:]

    @classmethod
    def ctr(cls, *args, check=True, timeout=300):
        p = subprocess.run(["ctr", "--address", cls.sock, *args], capture_output=True,
                           stdin=subprocess.DEVNULL, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {p.returncode}\n{p.stderr}")
        return p

    def test_1_runc_runs_the_image(self):
        t0 = time.monotonic()
        p = self.ctr("run", "--rm", "--snapshotter", "native", "--runtime",
                     "io.containerd.runc.v2", IMAGE, "runc-1", "/bin/echo", "from-runc",
                     check=False)
        print(f"ctr run through runc: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        if p.returncode != 0 and "cgroup" in p.stderr:
            self.skipTest("runc cannot run containers here: " + p.stderr.strip())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "from-runc")

    def test_2_create_fails_cleanly_without_serve(self):
        before = set(shim_processes())
        p = self.ctr("run", "--rm", "--snapshotter", "native", "--runtime",
                     "io.containerd.wisp.v2", IMAGE, "wisp-1", "/bin/echo", "hi", check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        # errdefs maps the shim's Unavailable to "unavailable"; the shim's message rides along.
        self.assertIn("Create: a sandbox of template hello", p.stderr)
        self.assertIn(f"wisp serve at {self.serve_sock} is not reachable", p.stderr)
        self.assertIn("unavailable", p.stderr)
        with open(self.log_path) as f:
            log = f.read()
        # The serving process logged through the bundle's log FIFO into containerd's log, and
        # containerd's ttrpc client decoded the shim's statuses (here Delete's).
        self.assertIn("shim wisp-1 (namespace default): serving ttrpc on " + self.shim_root, log)
        self.assertIn("code = NotFound desc = task wisp-1 not found in shim wisp-1", log)
        self.assertIn("shim wisp-1: shutdown", log)
        # containerd shut the shim down and ran its delete: nothing of it is left.
        deadline = time.time() + 30
        while time.time() < deadline and set(shim_processes()) - before:
            time.sleep(0.2)
        self.assertEqual(set(shim_processes()) - before, set(), log[-3000:])
        sockets = os.listdir(os.path.join(self.shim_root, "s")) if os.path.isdir(
            os.path.join(self.shim_root, "s")) else []
        self.assertEqual(sockets, [], "shim sockets left behind")
        tasks = self.ctr("tasks", "ls", "-q").stdout.split()
        self.assertNotIn("wisp-1", tasks)

    def test_3_ctr_run_runs_the_process_in_a_sandbox(self):
        env = dict(os.environ, WISP_HOME=os.path.join(self.tmp, "home"))
        serve_log = open(os.path.join(self.tmp, "serve.log"), "w+")
        self.addCleanup(serve_log.close)
        type(self).serve = subprocess.Popen(
            [self.wisp, "serve", "--socket", self.serve_sock, "--max-vms", "3", "--pool", "1",
             "--max-memory", "1024"], env=env, stdout=serve_log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(self.serve_sock), 30, "serve's socket")
        t0 = time.monotonic()
        subprocess.run([self.wisp, "template", "create", "hello", "--server", self.serve_sock,
                        "--handler", "cat", "--mem", "128"], env=env, check=True, timeout=900)
        print(f"template create: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        before = set(shim_processes())
        t0 = time.monotonic()
        p = self.ctr("run", "--rm", "--snapshotter", "native", "--runtime",
                     "io.containerd.wisp.v2", IMAGE, "wisp-2", "/bin/sh", "-c",
                     "echo from-wisp-$((6*7)); echo to-stderr >&2; exit 3", check=False)
        print(f"ctr run through the shim: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        serve_log.seek(0)
        detail = f"{p.stderr}\n--- serve ---\n{serve_log.read()[-3000:]}\n--- containerd ---\n" \
            f"{self.log_tail()}"
        self.assertEqual(p.stdout, "from-wisp-42\n", detail)
        # containerd's config.json escapes > and & (\u003e\u0026): they must arrive as such.
        self.assertEqual(p.stderr, "to-stderr\n", detail)
        self.assertEqual(p.returncode, 3, detail)
        wait_for(lambda: not (set(shim_processes()) - before), 30, "the shim to exit")
        listed = subprocess.run([self.wisp, "sandbox", "ls", "--server", self.serve_sock],
                                env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertNotIn("hello", listed.stdout, "the task's sandbox outlived it")

    def test_4_a_killed_shim_takes_its_sandbox_along(self):
        # After test_3: serve runs and the template exists.
        self.assertIsNotNone(self.serve, "test_3 starts serve")
        env = dict(os.environ, WISP_HOME=os.path.join(self.tmp, "home"))
        before = set(shim_processes())
        p = self.ctr("run", "-d", "--snapshotter", "native", "--runtime",
                     "io.containerd.wisp.v2", IMAGE, "wisp-3", "/bin/sh", "-c", "sleep 300",
                     check=False)
        self.assertEqual(p.returncode, 0, p.stderr)

        def sandboxes():
            r = subprocess.run([self.wisp, "sandbox", "ls", "--server", self.serve_sock],
                               env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            return [line for line in r.stdout.splitlines() if " hello " in line]

        self.assertEqual(len(sandboxes()), 1, "the running task has its sandbox")
        home = env["WISP_HOME"]
        # The sandbox's VMM (its jailed child too, when it runs as one: both hold the files).
        running, all_vmms = vmms_of_template(home, "hello")
        self.assertTrue(running, f"no VMM of the sandbox among wisp-vmm {all_vmms}")
        pool = sorted(set(all_vmms) - set(running))
        print(f"the sandbox's VMM processes: {running}; other wisp-vmm (serve's pool): {pool}",
              file=sys.stderr)
        self.assertTrue(pool, "serve runs with --pool 1: an idle VMM stands by beside it")
        shims = set(shim_processes()) - before
        self.assertEqual(len(shims), 1)
        cleanups = self.dead_shim_cleanups()
        os.kill(shims.pop(), signal.SIGKILL)
        # serve sees the shim's connection drop and destroys the sandbox it held; containerd
        # sees the shim gone and runs `containerd-shim-wisp-v2 delete`.
        wait_for(lambda: not sandboxes(), 60, "serve to destroy the dead shim's sandbox")
        wait_for(lambda: "wisp-3" not in self.ctr("tasks", "ls", "-q").stdout.split(), 60,
                 "containerd to drop the dead shim's task")
        # containerd ran `containerd-shim-wisp-v2 delete` for the dead shim (runtime/v2's
        # binary.Delete logs this line first).
        wait_for(lambda: self.dead_shim_cleanups() > cleanups, 60, "containerd's delete")
        # No VMM of the sandbox is left: its process is gone, and no wisp-vmm holds any file
        # of the template (the pool's idle VMMs may stay: they hold none).
        wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in running), 60,
                 "the sandbox's VMM to exit")
        running, all_vmms = vmms_of_template(home, "hello")
        self.assertEqual(running, [], f"a VMM of the template is left among {all_vmms}")
        self.ctr("containers", "rm", "wisp-3")
        self.assertEqual(os.listdir(os.path.join(self.shim_root, "s")), [],
                         "the dead shim's socket is left")

    def dead_shim_cleanups(self):
        with open(self.log_path) as f:
            return f.read().count("cleaning up dead shim")

    def run_detached(self, name, *command):
        p = self.ctr("run", "-d", "--snapshotter", "native", "--runtime",
                     "io.containerd.wisp.v2", IMAGE, name, *command, check=False)
        self.assertEqual(p.returncode, 0, p.stderr + self.log_tail())

    def task_status(self, name):
        m = re.search(rf"^{re.escape(name)}\s+\d+\s+(\w+)", self.ctr("tasks", "ls").stdout,
                      re.M)
        return m.group(1) if m else None

    def test_5_exec_pause_resume_kill_delete_and_their_events(self):
        self.assertIsNotNone(self.serve, "test_3 starts serve")
        events_out = open(os.path.join(self.tmp, "events.txt"), "w+")
        self.addCleanup(events_out.close)
        events = subprocess.Popen(["ctr", "--address", self.sock, "events"], stdout=events_out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: (events.kill(), events.wait()))
        self.run_detached("wisp-4", "/bin/sh", "-c", "sleep 300")
        self.assertEqual(self.task_status("wisp-4"), "RUNNING")
        # A further process in the same sandbox: its own output and exit code.
        p = self.ctr("tasks", "exec", "--exec-id", "e1", "wisp-4", "/bin/sh", "-c",
                     "echo exec-out; echo exec-err >&2; exit 5", check=False)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (5, "exec-out\n", "exec-err\n"),
                         self.log_tail())
        self.ctr("tasks", "pause", "wisp-4")
        self.assertEqual(self.task_status("wisp-4"), "PAUSED")
        p = self.ctr("tasks", "exec", "--exec-id", "e2", "wisp-4", "/bin/echo", "x", check=False)
        self.assertNotEqual(p.returncode, 0, "an exec in a paused task")
        self.assertIn("paused", p.stderr)
        self.ctr("tasks", "resume", "wisp-4")
        self.assertEqual(self.task_status("wisp-4"), "RUNNING")
        p = self.ctr("tasks", "exec", "--exec-id", "e3", "wisp-4", "/bin/echo", "resumed",
                     check=False)
        self.assertEqual((p.returncode, p.stdout), (0, "resumed\n"), p.stderr)
        self.ctr("tasks", "kill", "wisp-4")  # SIGTERM
        wait_for(lambda: self.task_status("wisp-4") == "STOPPED", 60, "the killed task to stop")
        p = self.ctr("tasks", "kill", "wisp-4", check=False)
        self.assertNotEqual(p.returncode, 0, "kill of an ended task")
        self.assertIn("not found", p.stderr)
        deleted = self.ctr("tasks", "delete", "wisp-4")
        self.assertIn("143", deleted.stdout + deleted.stderr)  # 128 + SIGTERM
        self.ctr("containers", "rm", "wisp-4")
        # The events the shim published reached containerd, which forwarded them to `ctr events`.
        want = ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
                "/tasks/exit", "/tasks/paused", "/tasks/resumed", "/tasks/delete"]

        def seen():
            events_out.seek(0)
            text = events_out.read()
            return all(t in text for t in want) and text
        try:
            text = wait_for(seen, 30, "the task's events")
        except AssertionError:
            events_out.seek(0)
            raise AssertionError("events seen:\n" + events_out.read()[-3000:])
        lines = [line for line in text.splitlines() if "wisp-4" in line]
        self.assertTrue(lines, text)
        exits = [line for line in lines if "/tasks/exit" in line]
        self.assertTrue(any('"exit_status":143' in line.replace(" ", "") for line in exits),
                        exits)

    def test_6_stdin_and_output_are_streamed(self):
        self.assertIsNotNone(self.serve, "test_3 starts serve")
        # The first line must arrive while the process still waits for its input.
        p = subprocess.Popen(
            ["ctr", "--address", self.sock, "run", "--rm", "--snapshotter", "native",
             "--runtime", "io.containerd.wisp.v2", IMAGE, "wisp-5", "/bin/sh", "-c",
             "echo first; read x; echo got-$x; cat"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        ready, _, _ = select.select([p.stdout], [], [], 300)
        self.assertTrue(ready, "no output within 300 s: " + self.log_tail())
        self.assertEqual(p.stdout.readline(), b"first\n")
        self.assertIsNone(p.poll(), "the process ended before its input came")
        # The input, then end of file (ctr closes the FIFO and sends CloseIO): cat ends.
        out, err = p.communicate(b"abc\nrest of the input\n", timeout=300)
        self.assertEqual(out, b"got-abc\nrest of the input\n", err)
        self.assertEqual(p.returncode, 0, err)

    def test_7_a_restarted_containerd_still_has_the_running_task(self):
        self.assertIsNotNone(self.serve, "test_3 starts serve")
        others = set(shim_processes())
        self.run_detached("wisp-6", "/bin/sh", "-c", "sleep 300")
        shim = set(shim_processes()) - others
        self.assertEqual(len(shim), 1)
        self.stop_containerd()
        self.assertTrue(shim <= set(shim_processes()), "the shim went with containerd")
        self.start_containerd()
        # containerd reconnects to the shim at the address in the bundle and asks it again.
        self.assertEqual(self.task_status("wisp-6"), "RUNNING", self.log_tail())
        self.ctr("tasks", "kill", "-s", "SIGKILL", "wisp-6")
        wait_for(lambda: self.task_status("wisp-6") == "STOPPED", 60, "the killed task to stop")
        deleted = self.ctr("tasks", "delete", "wisp-6")
        self.assertIn("137", deleted.stdout + deleted.stderr)  # 128 + SIGKILL
        self.ctr("containers", "rm", "wisp-6")
        wait_for(lambda: not (set(shim_processes()) & shim), 30, "the shim to exit")


if __name__ == "__main__":
    unittest.main(verbosity=2)
