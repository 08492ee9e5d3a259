#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A WebSocket game client not written in C++ (Debian's python3-websockets) against coho-gate:
# LOGIN, PING, CALL echo, then a text message, which is a protocol error: KICK 4 and a close.
# Usage: gate_ws_client.py PORT PATH SECRET   (exit 0 and "ws client ok" when all checked out)
import asyncio
import hashlib
import hmac
import struct
import sys

import websockets


def frame(ftype, seq, body=b""):
    return struct.pack("<IHHI", 8 + len(body), ftype, 0, seq) + body


def parse(msg):
    assert isinstance(msg, bytes), "the gateway sends binary messages"
    length, ftype, _flags, seq = struct.unpack("<IHHI", msg[:12])
    assert length + 4 == len(msg), "one frame per message"
    return ftype, seq, msg[12:]


async def main(port, path, secret):
    uid = 4242
    token = hmac.new(secret.encode(), str(uid).encode(), hashlib.sha256).hexdigest().encode()
    async with websockets.connect(f"ws://127.0.0.1:{port}{path}", compression=None) as ws:
        await ws.send(frame(1, 10, struct.pack("<QH", uid, len(token)) + token))
        ftype, seq, body = parse(await ws.recv())
        assert (ftype, seq) == (0x8001, 10), (ftype, seq)
        status, session = struct.unpack("<IQ", body[:12])
        assert status == 0 and session != 0 and len(body) == 32, body

        await ws.send(frame(2, 11))
        assert parse(await ws.recv())[:2] == (0x8002, 11)

        await ws.send(frame(4, 12, struct.pack("<H", 1) + b"over websocket"))
        ftype, seq, body = parse(await ws.recv())
        assert (ftype, seq, body) == (0x8004, 12, b"\0\0\0\0over websocket"), body

        await ws.send("text is a protocol error")
        ftype, seq, body = parse(await ws.recv())
        assert (ftype, seq, body) == (7, 0, struct.pack("<I", 4)), (ftype, seq, body)
        try:
            await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError("the gateway kept the connection open")
        except websockets.ConnectionClosed:
            pass
    # An oversize message: KICK 4, or a close with code 1009.
    async with websockets.connect(f"ws://127.0.0.1:{port}{path}", compression=None) as ws:
        await ws.send(frame(2, 1, b"x" * 70000))
        try:
            msg = await asyncio.wait_for(ws.recv(), 5)
            assert parse(msg) == (7, 0, struct.pack("<I", 4)), msg[:16]
        except websockets.ConnectionClosed:
            assert ws.close_code == 1009, ws.close_code
    print("ws client ok")


asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
