#!/usr/bin/env python3
"""Host end of wisp's vsock integration tests (python3 stdlib only); pairs with the guest's
guest/tools/vsock_tool. Prints one JSON object per connection; exit status 0 when all succeeded.

  vsock_host.py connect UDS PORT send N [--conns K]   CONNECT to guest PORT, send N random bytes,
      half-close, read the reply ("N SHA256" from `vsock_tool listen PORT sink`) -> match
  vsock_host.py connect UDS PORT recv [--conns K]     read until EOF (guest `source N`)
  vsock_host.py connect UDS PORT echo N [--conns K]   send N bytes, read them back (guest `echo`)
  vsock_host.py connect UDS PORT abort N [--conns K]  send up to N bytes, close without reading
  vsock_host.py listen UDS PORT sink|source N|echo [--count K]
      serve guest-initiated connections to host port PORT on UDS_PORT (the VMM dials it)
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import threading

CHUNK = 256 * 1024


def handshake(uds, port, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(uds)
    s.sendall(b"CONNECT %d\n" % port)
    line = b""
    while not line.endswith(b"\n"):  # byte by byte: what follows the line is stream data
        c = s.recv(1)
        if not c:
            raise ConnectionError("refused: no guest listener on port %d" % port)
        line += c
        if len(line) > 32:
            raise ConnectionError("bad handshake reply %r" % line)
    if not line.startswith(b"OK "):
        raise ConnectionError("bad handshake reply %r" % line)
    return s, int(line[3:])


def send_random(s, n):
    h = hashlib.sha256()
    left = n
    while left:
        b = os.urandom(min(left, CHUNK))
        h.update(b)
        s.sendall(b)
        left -= len(b)
    return h.hexdigest()


def recv_all(s, echo=None):
    h = hashlib.sha256()
    total = 0
    while True:
        b = s.recv(CHUNK)
        if not b:
            return total, h.hexdigest()
        h.update(b)
        total += len(b)
        if echo is not None:
            echo.sendall(b)


def client(args, index, results):
    r = {"conn": index, "mode": args.mode}
    try:
        s, host_port = handshake(args.uds, args.port, args.timeout)
        r["host_port"] = host_port
        if args.mode == "send":
            r["sha256"] = send_random(s, args.n)
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                reply += b
            reply = reply.decode(errors="replace").strip()
            r["reply"] = reply
            r["ok"] = reply == "%d %s" % (args.n, r["sha256"])
        elif args.mode == "recv":
            r["bytes"], r["sha256"] = recv_all(s)
            r["ok"] = True
        elif args.mode == "echo":
            got = {}
            t = threading.Thread(target=lambda: got.update(zip(("bytes", "sha"), recv_all(s))))
            t.start()
            sent = send_random(s, args.n)
            s.shutdown(socket.SHUT_WR)
            t.join()
            r.update(bytes=got.get("bytes"), sha256=sent)
            r["ok"] = got.get("bytes") == args.n and got.get("sha") == sent
        elif args.mode == "abort":
            # Up to N bytes, then close mid-stream; a peer that stops reading (e.g. an echo we
            # never read from) just ends it sooner.
            s.settimeout(5)
            try:
                send_random(s, args.n)
            except socket.timeout:
                pass
            r["ok"] = True
        s.close()
    except (OSError, ConnectionError) as e:
        r["ok"] = False
        r["error"] = str(e)
    results[index] = r


def serve(args, conn, index, results):
    r = {"conn": index, "mode": args.mode}
    try:
        conn.settimeout(args.timeout)
        if args.mode == "sink":
            n, digest = recv_all(conn)
            conn.sendall(b"%d %s\n" % (n, digest.encode()))
            r.update(bytes=n, sha256=digest, ok=True)
        elif args.mode == "source":
            r.update(bytes=args.n, sha256=send_random(conn, args.n), ok=True)
        elif args.mode == "echo":
            n, digest = recv_all(conn, echo=conn)
            r.update(bytes=n, sha256=digest, ok=True)
        conn.close()
    except OSError as e:
        r.update(ok=False, error=str(e))
    results[index] = r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("role", choices=["connect", "listen"])
    p.add_argument("uds")
    p.add_argument("port", type=int)
    p.add_argument("mode", choices=["send", "recv", "echo", "abort", "sink", "source"])
    p.add_argument("n", type=int, nargs="?", default=0)
    p.add_argument("--conns", type=int, default=1, help="connect: concurrent connections")
    p.add_argument("--count", type=int, default=1, help="listen: connections to serve")
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()

    results = {}
    threads = []
    if args.role == "connect":
        for i in range(args.conns):
            t = threading.Thread(target=client, args=(args, i, results))
            t.start()
            threads.append(t)
    else:
        path = "%s_%d" % (args.uds, args.port)
        if os.path.exists(path):
            os.unlink(path)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        # The jailed VMM connects with the VM's own uid, not ours (Unix sockets need write
        # permission to connect).
        os.chmod(path, 0o666)
        ls.listen(128)
        ls.settimeout(args.timeout)
        print(json.dumps({"listening": path}), flush=True)
        try:
            for i in range(args.count):
                conn, _ = ls.accept()
                t = threading.Thread(target=serve, args=(args, conn, i, results))
                t.start()
                threads.append(t)
        except OSError as e:
            results[-1] = {"ok": False, "error": "accept: %s" % e}
        finally:
            ls.close()
            os.unlink(path)
    for t in threads:
        t.join()
    for i in sorted(results):
        print(json.dumps(results[i]), flush=True)
    return 0 if results and all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
