"""An echo client: connect, send one message, read the whole echo, close.

Usage: python3 -u echo_client.py PORT MESSAGE
       python3 -u echo_client.py PORT --file IN OUT
(with --file, the message is the bytes of file IN and the echo is written
to file OUT, byte for byte)"""
import socket
import sys

port = int(sys.argv[1])
if sys.argv[2] == "--file":
    with open(sys.argv[3], "rb") as f:
        message = f.read()
else:
    message = sys.argv[2].encode()

client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.connect(("127.0.0.1", port))
client.sendall(message)
reply = bytearray()
while len(reply) < len(message):
    chunk = client.recv(65536)
    if not chunk:
        break
    reply += chunk
client.close()
if sys.argv[2] == "--file":
    with open(sys.argv[4], "wb") as f:
        f.write(reply)
    sys.stdout.write(f"echo of {len(reply)} bytes written\n")
else:
    sys.stdout.write(f"reply: {reply.decode()}\n")
