import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;

/**
 * An echo server for one client with ServerSocket and Data streams:
 * accept, readUTF one message, writeUTF it back, wait for the client's
 * close (read() returns -1 at its FIN), then close.
 *
 * Usage: java EchoServer PORT
 */
public class EchoServer {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        try (ServerSocket listener = new ServerSocket(port, 8, InetAddress.getByName("127.0.0.1"))) {
            System.out.println("listening on port " + listener.getLocalPort());
            try (Socket conn = listener.accept()) {
                DataInputStream in = new DataInputStream(conn.getInputStream());
                DataOutputStream out = new DataOutputStream(conn.getOutputStream());
                String message = in.readUTF();
                out.writeUTF(message);
                out.flush();
                int end = in.read();
                System.out.println("echoed \"" + message + "\"; then " + (end == -1 ? "the client closed" : "???"));
            }
        }
    }
}
