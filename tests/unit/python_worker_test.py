#!/usr/bin/env python3
"""guest/runtimes/python_worker.py speaks api/worker_protocol.md: frames in, frames out, an
exception becomes status 1 and the worker keeps serving; EOF on stdin ends it."""
import os
import struct
import subprocess
import sys
import unittest

RUNTIME = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "../../guest/runtimes/python_worker.py")
HANDLER = ("import sys; sys.path.insert(0, %r); import python_worker\n"
           "def h(p):\n"
           "    if p == b'boom': raise ValueError('boom')\n"
           "    print('noise on stdout must not corrupt frames')\n"
           "    return p.upper()\n"
           "python_worker.serve(h)\n") % os.path.dirname(RUNTIME)


def frame(payload):
    return struct.pack("<I", len(payload)) + payload


class PythonWorkerTest(unittest.TestCase):
    def test_frames_errors_and_eof(self):
        inp = frame(b"hello") + frame(b"boom") + frame(b"") + frame(b"x" * 100000)
        p = subprocess.run([sys.executable, "-c", HANDLER], input=inp, capture_output=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        out, replies = p.stdout, []
        while out:
            n, status = struct.unpack_from("<IB", out)
            replies.append((status, out[5:5 + n]))
            out = out[5 + n:]
        self.assertEqual(replies, [(0, b"HELLO"), (1, b""), (0, b""), (0, b"X" * 100000)])
        self.assertIn(b"ValueError: boom", p.stderr)
        self.assertIn(b"noise on stdout", p.stderr)

    # A clone of a warm worker starts with the template's generator state; seeding with a
    # constant stands in for that shared state.
    CLONE = ("import random, sys; sys.path.insert(0, %r); import python_worker\n"
             "random.seed(42)\n"
             "@python_worker.on_resume\n"
             "def first(): raise RuntimeError('broken hook')\n"
             "python_worker.on_resume(lambda: print('second hook ran', file=sys.stderr))\n"
             "python_worker.serve(lambda p: repr(random.random()))\n") % os.path.dirname(RUNTIME)

    def clone_reply(self, notice):
        inp = (struct.pack("<I", 0xFFFFFFFF) if notice else b"") + frame(b"")
        p = subprocess.run([sys.executable, "-c", self.CLONE], input=inp, capture_output=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        n, status = struct.unpack_from("<IB", p.stdout)
        self.assertEqual((status, len(p.stdout)), (0, 5 + n), "no reply to the notice itself")
        return p.stdout[5:], p.stderr

    def test_resumed_notice_reseeds_random_and_runs_hooks(self):
        same = [self.clone_reply(False)[0] for _ in range(2)]
        self.assertEqual(same[0], same[1], "without the notice clones repeat each other")
        (a, err), (b, _) = self.clone_reply(True), self.clone_reply(True)
        self.assertNotEqual(a, b)
        self.assertNotEqual(a, same[0])
        self.assertIn(b"RuntimeError: broken hook", err)
        self.assertIn(b"second hook ran", err, "a failing hook does not stop the next")


if __name__ == "__main__":
    unittest.main()
