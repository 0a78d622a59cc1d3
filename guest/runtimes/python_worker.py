"""wisp's Python worker runtime: the framing of api/worker_protocol.md in a few lines.

    import python_worker
    model = load_model()                      # expensive initialisation, once
    python_worker.on_resume(lambda: numpy.random.seed())   # optional, see below
    python_worker.serve(lambda payload: model.run(payload))

serve() reads request frames from stdin and writes response frames to stdout. The handler
gets the payload as bytes and returns bytes (or str, encoded UTF-8); an exception becomes
status 1 with the traceback on stderr (the agent returns that stderr with the call). Print
diagnostics to stderr only: stdout carries frames.

A worker may be snapshotted warm and restored many times: every clone starts with the same
memory, so the same state of every random generator in it. On the agent's "resumed" notice
(sent once per restore, after the kernel's generator was reseeded) serve() reseeds `random`
from os.urandom and then calls each hook registered with on_resume(), in order: reseed there
what else the handler holds (numpy, a UUID or nonce prefix, a connection pool to reopen).

Run as a script it is an example worker that answers with the upper-cased payload.
"""
import random
import struct
import sys
import traceback

RESUMED_NOTICE = 0xFFFFFFFF  # a request length that is the "resumed" notice, no payload

_resume_hooks = []


def on_resume(hook):
    """Registers hook() to run in each restored clone, before its first call. Returns hook,
    so it also works as a decorator. An exception in a hook is printed to stderr."""
    _resume_hooks.append(hook)
    return hook


def _resumed():
    random.seed()  # from os.urandom: a fresh sequence per clone
    for hook in _resume_hooks:
        try:
            hook()
        except Exception:
            traceback.print_exc(file=sys.stderr)


def serve(handler):
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must not corrupt the framing
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return  # the agent closed stdin: the worker is done
        (length,) = struct.unpack("<I", header)
        if length == RESUMED_NOTICE:
            _resumed()
            sys.stderr.flush()
            continue
        payload = stdin.read(length)
        if len(payload) < length:
            return
        try:
            result, status = handler(payload), 0
            if isinstance(result, str):
                result = result.encode()
        except Exception:
            traceback.print_exc(file=sys.stderr)
            result, status = b"", 1
        stdout.write(struct.pack("<IB", len(result), status) + result)
        stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    serve(lambda payload: payload.upper())
