// EchoClient.java: a tiny TCP client. It sends one writeUTF frame
// through a buffered stream, prints the answer, and waits for the
// server to close the connection.
import java.io.*;
import java.net.*;

public class EchoClient {
    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(args[0]);
        try (Socket socket = new Socket("127.0.0.1", port)) {
            var out = new DataOutputStream(
                    new BufferedOutputStream(socket.getOutputStream()));
            var in = new DataInputStream(socket.getInputStream());
            out.writeUTF(args[1]);        // into the buffer, not the socket
            out.flush();                  // now one write() to the kernel
            System.out.println("answer: " + in.readUTF());
            in.read();                    // -1 once the server has closed
        }
    }
}
