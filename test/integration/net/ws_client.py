#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A WebSocket client not written here (Debian's python3-websockets) against a coho_server with
# websocket on: binary and text messages, a fragmented message, ping/pong, the close handshake.
# Usage: ws_client.py PORT PATH   (exit 0 when every exchange checked out)
import asyncio
import sys

import websockets


async def main(port, path):
    uri = f"ws://127.0.0.1:{port}{path}"
    async with websockets.connect(uri, compression=None, max_size=None) as ws:
        await ws.send(b"\x01\x02binary")
        assert await ws.recv() == b"\x01\x02binary"
        await ws.send("text \u00fc")
        assert await ws.recv() == "text \u00fc".encode()  # the server sends binary messages
        await ws.send([b"frag1-", b"frag2-", b"frag3"])  # one message in three frames
        assert await ws.recv() == b"frag1-frag2-frag3"
        big = bytes(range(256)) * 300  # 76800 bytes: a 64-bit length
        await ws.send(big)
        assert await ws.recv() == big
        pong = await ws.ping(b"hb")
        await asyncio.wait_for(pong, 5)
    assert ws.close_code == 1000, ws.close_code
    print("ws client: binary, text, fragments, 64-bit length, ping, close 1000")


asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
