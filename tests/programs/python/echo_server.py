"""An echo server for one client: accept, read one message, send it back,
wait for the client's close (its FIN), then close.

Usage: python3 -u echo_server.py PORT [SIZE]
With SIZE, the message is SIZE bytes long: it is read in full (however
many reads that takes) and echoed in full."""
import socket
import sys

port = int(sys.argv[1])
size = int(sys.argv[2]) if len(sys.argv) > 2 else None

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(8)
sys.stdout.write(f"listening on port {listener.getsockname()[1]}\n")

conn, peer = listener.accept()
if size is None:
    data = conn.recv(1024)
    conn.sendall(data)
else:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.sendall(data)
# The client closes first: recv() returns b"" once its FIN has come.
rest = conn.recv(1024)
conn.close()
listener.close()
then = "the client closed" if rest == b"" else "the client sent more"
sys.stdout.write(f"echoed {len(data)} bytes; then {then}\n")
