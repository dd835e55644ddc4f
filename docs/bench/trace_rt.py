import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
t = time.perf_counter()
for i in range(n):
    c.sendall(b"ping\n")
    got = b""
    while len(got) < 5:
        got += c.recv(64)
dt = time.perf_counter() - t
print(f"{n} round trips in {dt:.3f} s: {n/dt:.0f}/s, {dt/n*1e6:.1f} us each", flush=True)
c.close()
