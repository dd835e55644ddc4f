import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.net.Socket;

/**
 * An echo client with Socket and Data streams: connect, writeUTF one
 * message, readUTF the echo, close.
 *
 * Usage: java EchoClient PORT MESSAGE
 */
public class EchoClient {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        try (Socket socket = new Socket("127.0.0.1", port)) {
            DataOutputStream out = new DataOutputStream(socket.getOutputStream());
            DataInputStream in = new DataInputStream(socket.getInputStream());
            out.writeUTF(args[1]);
            out.flush();
            System.out.println("reply: " + in.readUTF());
        }
    }
}
