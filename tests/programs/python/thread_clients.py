"""A server and N threads that each connect to it once, in one process.

The listener binds port 0 on 127.0.0.1; N client threads each connect,
send one line, and read the server's reply; the main thread accepts all
N connections and answers each. Exits 0 when every thread got its reply.

Usage: python3 -u thread_clients.py N"""
import socket
import sys
import threading

count = int(sys.argv[1])
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(count)
port = listener.getsockname()[1]
replies = []
lock = threading.Lock()


def client(n):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"hi %d\n" % n)
        reply = s.makefile("rb").readline()
    with lock:
        replies.append(reply)


threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
for t in threads:
    t.start()
for _ in range(count):
    conn, _ = listener.accept()
    with conn:
        line = conn.makefile("rb").readline()
        conn.sendall(b"ok " + line)
for t in threads:
    t.join()
listener.close()
sys.stdout.write(f"threads: {count}, replies: {len(replies)}\n")
sys.exit(0 if len(replies) == count else 1)
