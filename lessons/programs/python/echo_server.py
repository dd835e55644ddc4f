# echo_server.py: a tiny TCP server, one thread per client.
# It reads one message, answers it in capitals, and closes first.
import socket, sys, threading

def serve(conn, addr):
    with conn:                    # conn.close() at the end
        data = conn.recv(1024)    # what has arrived, up to 1024 bytes
        print("got", data, "from", addr)
        conn.sendall(data.upper())

port = int(sys.argv[1])
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
print("listening on port", port)
while True:
    conn, addr = server.accept()
    threading.Thread(target=serve, args=(conn, addr)).start()
