#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Clients not written here against coho_server with TLS: Python's ssl module (OpenSSL) speaking
# 4-byte-LE-prefixed frames, or python3-websockets over wss. Both verify the server's
# certificate against CERT (self-signed, made at test time) for the name "localhost".
# Usage: tls_client.py tcp|wss PORT CERT
import asyncio
import socket
import ssl
import sys

mode, port, cert = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cert)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        part = s.recv(n - len(b))
        if not part:
            raise EOFError("server closed")
        b += part
    return b


def tcp():
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            for payload in (b"over tls", b"x" * 100000, b""):
                s.sendall(len(payload).to_bytes(4, "little") + payload)
                n = int.from_bytes(recv_exact(s, 4), "little")
                assert recv_exact(s, n) == payload
            print("tls client:", s.version(), "frames echoed")


async def wss():
    import websockets
    async with websockets.connect(f"wss://localhost:{port}/", ssl=ctx, compression=None,
                                  max_size=None) as ws:
        await ws.send(b"over wss")
        assert await ws.recv() == b"over wss"
    assert ws.close_code == 1000, ws.close_code
    print("wss client: message echoed, close 1000")


if mode == "tcp":
    tcp()
else:
    asyncio.run(wss())
