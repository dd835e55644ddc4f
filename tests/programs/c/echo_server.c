/* An echo server over IPv6 for one client, with read() and write():
 * accept, read one message, write it back, wait for the client's close
 * (read() returns 0 at its FIN), then close.
 *
 * Usage: echo_server PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void check(int ok, const char *what) {
    if (!ok) {
        perror(what);
        exit(1);
    }
}

int main(int argc, char **argv) {
    check(argc == 2, "usage: echo_server PORT");
    setvbuf(stdout, NULL, _IOLBF, 0);
    int listener = socket(AF_INET6, SOCK_STREAM, 0);
    check(listener >= 0, "socket");
    int one = 1;
    check(setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "setsockopt");
    struct sockaddr_in6 addr = {0};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(atoi(argv[1]));
    addr.sin6_addr = in6addr_loopback;
    check(bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0, "bind");
    check(listen(listener, 4) == 0, "listen");
    printf("listening on [::1]:%s\n", argv[1]);

    int conn = accept(listener, NULL, NULL);
    check(conn >= 0, "accept");
    char buf[1024];
    ssize_t n = read(conn, buf, sizeof buf);
    check(n > 0, "read");
    check(write(conn, buf, n) == n, "write");
    char rest[16];
    check(read(conn, rest, sizeof rest) == 0, "read (the client's FIN)");
    close(conn);
    close(listener);
    printf("echoed %zd bytes\n", n);
    return 0;
}
