#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Runs examples/chat on a kernel-chosen loopback port: three clients connect, each line one of
# them sends reaches all three, and a client that leaves does not disturb the others.
# Usage: chat_example.py PATH_TO_CHAT
import socket
import subprocess
import sys


def main():
    chat = subprocess.Popen([sys.argv[1], "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        line = chat.stdout.readline()
        port = int(line.split()[-1])
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        files = [c.makefile("r") for c in clients]
        # Handlers join the room in accept order, so once the last client's line is read, all
        # three are in: it goes first, then the others.
        for i in (2, 1, 0):
            clients[i].sendall(f"hello from {i}\n".encode())
            for f in files:
                got = f.readline()
                assert got == f"hello from {i}\n", (i, got)
        clients[0].close()
        clients[1].sendall(b"still here\n")
        for f in files[1:]:
            assert f.readline() == "still here\n"
        print("chat example: 3 clients, lines reach everyone")
        return 0
    finally:
        chat.kill()
        chat.wait()


sys.exit(main())
