"""wisp's Python worker runtime: the framing of api/worker_protocol.md in a few lines.

    import python_worker
    model = load_model()                      # expensive initialisation, once
    python_worker.serve(lambda payload: model.run(payload))

serve() reads request frames from stdin and writes response frames to stdout. The handler
gets the payload as bytes and returns bytes (or str, encoded UTF-8); an exception becomes
status 1 with the traceback on stderr (the agent returns that stderr with the call). Print
diagnostics to stderr only: stdout carries frames.

Run as a script it is an example worker that answers with the upper-cased payload.
"""
import struct
import sys
import traceback


def serve(handler):
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must not corrupt the framing
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return  # the agent closed stdin: the worker is done
        (length,) = struct.unpack("<I", header)
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
