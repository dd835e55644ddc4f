"""Forks N children; each makes a TCP socket, closes it, and exits with
status 0. The parent waits for them all and exits 0 if all did.

Usage: python3 -u fork_sockets.py N"""
import os
import socket
import sys

count = int(sys.argv[1])
children = []
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.close()
        os._exit(0)
    children.append(pid)
failed = 0
for pid in children:
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed += 1
sys.stdout.write(f"children: {count}, failed: {failed}\n")
sys.exit(1 if failed else 0)
