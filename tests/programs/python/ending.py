"""Ends the way its arguments say, with a TCP socket still open (the
kernel closes it at the end, as close() would).

Usage: python3 ending.py exit N       exits with status N
       python3 ending.py signal NAME  kills itself with signal NAME (SIGKILL, SIGSEGV…)"""
import os
import resource
import signal
import socket
import sys

still_open = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if sys.argv[1] == "exit":
    os._exit(int(sys.argv[2]))  # at once: the socket stays open to the end
sig = getattr(signal, sys.argv[2])
# A crash must not leave a core file behind.
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if sig != signal.SIGKILL:
    signal.signal(sig, signal.SIG_DFL)  # Python's own handler would not end it
os.kill(os.getpid(), sig)
