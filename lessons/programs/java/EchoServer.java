// EchoServer.java: a tiny TCP server, one thread per client. It reads
// one writeUTF frame, answers it in capitals, and closes first.
import java.io.*;
import java.net.*;

public class EchoServer {
    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(args[0]);
        InetAddress loopback = InetAddress.getLoopbackAddress();
        try (ServerSocket server = new ServerSocket(port, 50, loopback)) {
            System.out.println("listening on port " + port);
            while (true) {
                Socket client = server.accept();
                new Thread(() -> serve(client)).start();
            }
        }
    }

    static void serve(Socket client) {
        try (client) {
            var in = new DataInputStream(client.getInputStream());
            var out = new DataOutputStream(client.getOutputStream());
            String text = in.readUTF();   // 2 bytes of length, then text
            System.out.println("got " + text);
            out.writeUTF(text.toUpperCase());
        } catch (IOException e) {
            System.err.println("serve: " + e);
        }
    }
}
