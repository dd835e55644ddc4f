/* thread_echo.c: a bare thread-per-client TCP echo server on 127.0.0.1.
 *
 * Not part of sockdemo: a yardstick beside ../shared/bench/. sockdemo's
 * server keeps a thread per client because that is the lesson; this is the
 * same design with nothing else (no narration, no capture, no limits), so
 * it shows what the design itself costs against a single epoll loop, and
 * what is left for the narration.
 *
 *   cc -O2 -pthread -o thread_echo docs/bench/thread_echo.c
 *   ./thread_echo 7004 &
 *   echo_load 7004 -n 1000 -r 20 --timeout 60
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void *serve(void *arg) {
    int fd = (int)(long)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t m = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (m <= 0)
                goto done;
            off += m;
        }
    }
done:
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 4096) != 0) {
        perror("bind/listen");
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024); /* as sockdemo's client threads */
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept(s, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, &attr, serve, (void *)(long)fd) != 0)
            close(fd);
    }
}
