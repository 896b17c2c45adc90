#!/usr/bin/env python3
"""Hold N idle listening sockets on loopback (ephemeral ports) for the scale
benchmark; prints "ready" once they all listen, then sleeps until killed."""
import socket
import sys
import time

socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    socks.append(s)
print("ready", flush=True)
time.sleep(600)
