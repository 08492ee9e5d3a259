#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A TLS game client (Python's ssl module) against coho-gate with --tls-cert/--tls-key: LOGIN,
# PING, CALL echo inside TLS.
# Usage: gate_tls_client.py PORT SECRET   (exit 0 and "tls client ok" when all checked out)
import hashlib
import hmac
import socket
import ssl
import struct
import sys


def frame(ftype, seq, body=b""):
    return struct.pack("<IHHI", 8 + len(body), ftype, 0, seq) + body


def read_frame(s):
    def exact(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            assert chunk, "closed"
            b += chunk
        return b

    length, ftype, _flags, seq = struct.unpack("<IHHI", exact(12))
    return ftype, seq, exact(length - 8)


port, secret = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        uid = 77
        token = hmac.new(secret.encode(), str(uid).encode(), hashlib.sha256).hexdigest().encode()
        s.sendall(frame(1, 1, struct.pack("<QH", uid, len(token)) + token))
        ftype, seq, body = read_frame(s)
        assert (ftype, seq) == (0x8001, 1) and struct.unpack("<I", body[:4])[0] == 0, body
        s.sendall(frame(2, 2))
        assert read_frame(s)[:2] == (0x8002, 2)
        s.sendall(frame(4, 3, struct.pack("<H", 1) + b"sealed"))
        assert read_frame(s) == (0x8004, 3, b"\0\0\0\0sealed")
print("tls client ok")
