"""A server that listens on port 0 of 127.0.0.1, says its port, and then
waits in accept() for a client that never comes.

Usage: python3 -u blocked_accept.py"""
import socket
import sys

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(1)
sys.stdout.write(f"listening on port {listener.getsockname()[1]}\n")
listener.accept()
sys.stdout.write("accepted: nobody should have connected\n")
