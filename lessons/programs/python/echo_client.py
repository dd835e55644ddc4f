# echo_client.py: a tiny TCP client. It sends one line, then reads the
# answer until the server closes the connection.
import socket, sys

port, text = int(sys.argv[1]), sys.argv[2]
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.connect(("127.0.0.1", port))
client.sendall(text.encode() + b"\n")
answer = b""
while chunk := client.recv(1024):   # b"" once the server has closed
    answer += chunk
print("answer:", answer)
client.close()
