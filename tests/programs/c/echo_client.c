/* An echo client over IPv6 with write() and read(): connect to [::1],
 * send one message, read the echo, close.
 *
 * Usage: echo_client PORT MESSAGE */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void check(int ok, const char *what) {
    if (!ok) {
        perror(what);
        exit(1);
    }
}

int main(int argc, char **argv) {
    check(argc == 3, "usage: echo_client PORT MESSAGE");
    setvbuf(stdout, NULL, _IOLBF, 0);
    int sock = socket(AF_INET6, SOCK_STREAM, 0);
    check(sock >= 0, "socket");
    struct sockaddr_in6 addr = {0};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(atoi(argv[1]));
    addr.sin6_addr = in6addr_loopback;
    check(connect(sock, (struct sockaddr *)&addr, sizeof addr) == 0, "connect");
    size_t len = strlen(argv[2]);
    check(write(sock, argv[2], len) == (ssize_t)len, "write");
    char buf[1024];
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(sock, buf + got, sizeof buf - got);
        check(n > 0, "read");
        got += n;
    }
    close(sock);
    printf("reply: %.*s\n", (int)got, buf);
    return 0;
}
