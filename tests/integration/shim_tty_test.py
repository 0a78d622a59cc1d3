#!/usr/bin/env python3
"""containerd-shim-wisp-v2: containers on a terminal (issue 16, TTYs), under Debian's real
containerd and a real `wisp serve` (guests boot: run it inside KVM, tests/integration/in-kvm).

`ctr run -t` and `ctr task exec -t` need their stdin to be a terminal: each runs here on a
pseudo-terminal the test makes (os.openpty), sized with TIOCSWINSZ first; ctr puts it in raw
mode and sends the size as ResizePty after Start. In the guest the process runs on a pty of
its own devpts instance (agent/sandbox_terminal.h), in the container's own root (the fixture's
busybox image, as shim_rootfs_test.py runs it). Checked: `tty` names /dev/pts/N, `stty size`
shows the size ctr sent, a typed line reaches the process (through the guest's line
discipline: echo, CR to NL), a resize of the test's terminal (TIOCSWINSZ + SIGWINCH to ctr,
which forwards it as ResizePty) is what a later `stty size` in the process sees, an exec with
-t gets a terminal of its own, ^D ends the input, and the exit code comes back.

    flock /work/wt/testbed.lock tests/integration/in-kvm python3 \\
        tests/integration/shim_tty_test.py
"""
import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shim_containerd_test as fixture_module  # noqa: E402  (a module: its tests stay its own)
from shim_containerd_test import IMAGE  # noqa: E402
from vmrun import wait_for  # noqa: E402  (perf/, on the path the fixture set)

# The container's process: its terminal, then one `stty size` per line typed, until ^D.
SCRIPT = ("/bin/busybox tty; while read l; do echo got:$l; /bin/busybox stty size; done; "
          "echo to-stderr >&2; echo bye; exit 7")


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """A command run on a new pseudo-terminal of `rows` x `cols`; its output read from the
    master as it comes."""

    def __init__(self, args, rows, cols):
        self.master, slave = os.openpty()
        set_size(slave, rows, cols)
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True)
        os.close(slave)
        self.text = ""

    def expect(self, pattern, timeout):
        """Reads until `pattern` (a regex) matches the output so far (CRs dropped); returns the
        match. Fails with the output when it does not within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout} s in:\n{self.text}")
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:  # EIO: the command ended and closed the terminal
                    data = b""
                if not data and self.proc.poll() is not None:
                    raise AssertionError(f"ended ({self.proc.returncode}) before {pattern!r}:\n"
                                         f"{self.text}")
                self.text += data.decode(errors="replace").replace("\r", "")

    def type(self, text):
        os.write(self.master, text.encode())

    def resize(self, rows, cols):
        # What a terminal emulator does: the new size, then SIGWINCH to the program (ctr does
        # not lead this terminal's session, so the kernel's own SIGWINCH does not reach it).
        set_size(self.master, rows, cols)
        os.kill(self.proc.pid, signal.SIGWINCH)

    def finish(self, timeout):
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            # The rest of the output (the master reads EIO once the slave is closed).
            while select.select([self.master], [], [], 0.2)[0]:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    break
                if not data:
                    break
                self.text += data.decode(errors="replace").replace("\r", "")
            os.close(self.master)
        return self.proc.returncode


class ShimTtyTest(unittest.TestCase):
    fixture = fixture_module.ShimContainerdTest.__dict__
    log_tail = fixture["log_tail"]
    ctr = fixture["ctr"]
    start_containerd = fixture["start_containerd"]
    stop_containerd = fixture["stop_containerd"]
    image_files = {}

    @classmethod
    def setUpClass(cls):
        cls.cache = tempfile.mkdtemp(prefix="wisp-rootfs-cache-")
        # No fixed template: the container's own root (the image's busybox), as containerd
        # users run it.
        cls.shim_env = {"WISP_SHIM_ROOTFS_CACHE": cls.cache}
        cls.fixture["setUpClass"].__func__(cls)
        cls.env = dict(os.environ, WISP_HOME=os.path.join(cls.tmp, "home"))
        cls.serve_log = open(os.path.join(cls.tmp, "serve.log"), "w+")
        cls.serve = subprocess.Popen(
            [cls.wisp, "serve", "--socket", cls.serve_sock, "--max-vms", "3",
             "--max-memory", "1536", "--allow-dir", cls.cache],
            env=cls.env, stdout=cls.serve_log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(cls.serve_sock), 30, "serve's socket")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.fixture["tearDownClass"].__func__(cls)
        finally:
            if getattr(cls, "serve_log", None):
                cls.serve_log.close()
            shutil.rmtree(cls.cache, ignore_errors=True)

    def detail(self, *terminals):
        self.serve_log.seek(0)
        out = "".join(f"--- terminal ---\n{t.text}\n" for t in terminals)
        return (f"{out}--- serve ---\n{self.serve_log.read()[-3000:]}\n"
                f"--- containerd ---\n{self.log_tail()}")

    def ctr_args(self, *args):
        return ["ctr", "--address", self.sock, *args]

    def test_run_and_exec_on_a_terminal(self):
        t0 = time.monotonic()
        run = Terminal(self.ctr_args("run", "-t", "--rm", "--snapshotter", "native",
                                     "--runtime", "io.containerd.wisp.v2", IMAGE, "tty-1",
                                     "/bin/sh", "-c", SCRIPT), rows=33, cols=111)
        self.addCleanup(lambda: run.proc.poll() is None and (run.proc.kill(), run.proc.wait()))
        try:
            # The process's stdout is a terminal of its own devpts instance: its first pty.
            m = run.expect(r"(/dev/pts/\d+|not a tty)\n", 300)
            print(f"ctr run -t: first output after {time.monotonic() - t0:.1f} s",
                  file=sys.stderr)
            self.assertEqual(m.group(1), "/dev/pts/0", self.detail(run))
            # A typed line reaches it (the guest's pty echoes it, and maps CR to NL); the size
            # is the one ctr read from this terminal and sent as ResizePty.
            run.type("hello\r")
            run.expect(r"got:hello\n(\d+ \d+)\n", 60)
            self.assertIn("got:hello\n33 111\n", run.text, self.detail(run))

            # This terminal resized: ctr forwards the size; a later `stty size` sees it (each
            # line typed runs one; ResizePty travels apart from the typed input, so retried).
            run.resize(40, 120)
            deadline = time.monotonic() + 30
            n = 0
            while "40 120\n" not in run.text:
                self.assertLess(time.monotonic(), deadline, self.detail(run))
                n += 1
                run.type(f"r{n}\r")
                run.expect(rf"got:r{n}\n\d+ \d+\n", 60)
                time.sleep(0.2)
            print(f"resize seen after {n} line(s)", file=sys.stderr)

            # An exec with -t in the same container: a terminal of its own, its own size.
            t1 = time.monotonic()
            exe = Terminal(self.ctr_args("tasks", "exec", "-t", "--exec-id", "tty-e1", "tty-1",
                                         "/bin/sh", "-c",
                                         "/bin/busybox tty; read x; echo x:$x; "
                                         "/bin/busybox stty size; exit 3"),
                           rows=25, cols=90)
            m = exe.expect(r"(/dev/pts/\d+|not a tty)\n", 120)
            self.assertEqual(m.group(1), "/dev/pts/0", self.detail(exe, run))
            exe.type("y\r")
            exe.expect(r"x:y\n\d+ \d+\n", 60)
            self.assertIn("x:y\n25 90\n", exe.text, self.detail(exe))
            self.assertEqual(exe.finish(60), 3, self.detail(exe))
            print(f"ctr task exec -t: {time.monotonic() - t1:.1f} s", file=sys.stderr)

            # ^D on an empty line: end of input for `read`; the loop ends, the exit code comes
            # back through ctr. Stderr is the terminal too.
            run.type("\x04")
            run.expect(r"to-stderr\nbye\n", 60)
            self.assertEqual(run.finish(60), 7, self.detail(run))
            print(f"--- the container's terminal ---\n{run.text}--- the exec's ---\n{exe.text}",
                  file=sys.stderr)
        except AssertionError:
            raise
        except Exception as e:  # a timeout or OS error: with what was seen
            raise AssertionError(f"{e!r}\n{self.detail(run)}")
        print(f"ctr run -t, in all: {time.monotonic() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
