#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Clients for the EMFILE test, in a process of their own (so that only the server runs out of
# fds): N connections to 127.0.0.1:PORT, each sends one 4-byte-LE-prefixed frame and waits for its
# echo or for the server to close it (a shed connection is closed at once, so no short timeout
# decides the count on a slow machine); prints how many were answered, then holds every connection
# open until a line arrives on stdin. It starts on a first line from stdin.  Usage: fd_clients.py PORT N
import socket
import sys

port, n = int(sys.argv[1]), int(sys.argv[2])
conns, answered = [], 0
sys.stdin.readline()
frame = b"\x01\x00\x00\x00q"
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    conns.append(s)
    s.settimeout(20)
    try:
        s.sendall(frame)
        got = b""
        while len(got) < len(frame):
            b = s.recv(len(frame) - len(got))
            if not b:
                break
            got += b
        if got == frame:
            answered += 1
    except OSError:
        pass
print(answered, flush=True)
sys.stdin.readline()
for s in conns:
    s.close()
