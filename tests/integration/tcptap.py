#!/usr/bin/env python3
"""tcptap.py - a loopback TCP forwarder for the integration tests.

    tcptap.py PORTFILE DEST_HOST DEST_PORT [--max-conns N]

Listens on 127.0.0.1 (a free port, written to PORTFILE once listening) and forwards every
accepted connection to DEST_HOST:DEST_PORT. With --max-conns N it stops listening after
N connections (a later connect is refused), so a test can prove that only the first
connection went through it. Exits after 10 minutes or on SIGTERM.
"""
import os
import signal
import socket
import sys
import threading
import time


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    args = sys.argv[1:]
    portfile, host, port = args[0], args[1], int(args[2])
    max_conns = 0
    i = 3
    while i < len(args):
        if args[i] == "--max-conns":
            max_conns = int(args[i + 1])
            i += 2
        else:
            sys.exit("tcptap.py: unknown argument " + args[i])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    ls.settimeout(1)
    end, n = time.time() + 600, 0
    while time.time() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        n += 1
        if max_conns and n >= max_conns:
            ls.close()
        u = socket.create_connection((host, port))
        threading.Thread(target=pump, daemon=True, args=(c, u)).start()
        threading.Thread(target=pump, daemon=True, args=(u, c)).start()
        if max_conns and n >= max_conns:
            break
    while time.time() < end:
        time.sleep(1)


if __name__ == "__main__":
    main()
