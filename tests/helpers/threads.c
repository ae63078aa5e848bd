/*
 * threads - many threads making many TCP connections at once, each checking
 * the options of its socket with getsockopt.
 *
 *   threads connect THREADS CONNECTIONS IDLE   sockets that connect(2)
 *   threads listen THREADS CONNECTIONS IDLE    sockets that accept(2) returns,
 *                                              each thread with its own listener
 *
 * IDLE is the TCP_KEEPIDLE every checked socket must have (with SO_KEEPALIVE
 * on). Prints {"checked": N, "wrong": N, "errors": N} and exits 0 only if
 * every socket was configured and no call failed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int connections, idle, listen_mode;
static struct sockaddr_in server;
static atomic_int checked, wrong, errors;

static void check(int fd)
{
    int on = 0, value = 0;
    socklen_t len = sizeof on;
    if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len) != 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &value, &len) != 0) {
        atomic_fetch_add(&errors, 1);
        return;
    }
    atomic_fetch_add(&checked, 1);
    if (on != 1 || value != idle)
        atomic_fetch_add(&wrong, 1);
}

static int listener(struct sockaddr_in *addr)
{
    socklen_t len = sizeof *addr;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, len) != 0 || listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) != 0)
        return -1;
    return fd;
}

static void *acceptor(void *arg)
{
    int fd = *(int *)arg;
    for (;;) {
        int conn = accept(fd, NULL, NULL);
        if (conn >= 0)
            close(conn);
    }
    return NULL;
}

static void *worker(void *arg)
{
    (void)arg;
    struct sockaddr_in own;
    int lfd = listen_mode ? listener(&own) : -1;
    if (listen_mode && lfd < 0) {
        atomic_fetch_add(&errors, 1);
        return NULL;
    }
    for (int i = 0; i < connections; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        const struct sockaddr_in *to = listen_mode ? &own : &server;
        if (fd < 0 || connect(fd, (const struct sockaddr *)to, sizeof *to) != 0) {
            atomic_fetch_add(&errors, 1);
            if (fd >= 0)
                close(fd);
            continue;
        }
        if (listen_mode) {
            int conn = accept(lfd, NULL, NULL);
            if (conn < 0)
                atomic_fetch_add(&errors, 1);
            else {
                check(conn);
                close(conn);
            }
        } else {
            check(fd);
        }
        close(fd);
    }
    if (lfd >= 0)
        close(lfd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: threads connect|listen THREADS CONNECTIONS IDLE\n");
        return 2;
    }
    listen_mode = strcmp(argv[1], "listen") == 0;
    int nthreads = atoi(argv[2]);
    connections = atoi(argv[3]);
    idle = atoi(argv[4]);
    if (nthreads < 1 || nthreads > 64)
        return 2;
    pthread_t acceptor_thread, threads[64];
    int lfd = -1;
    if (!listen_mode) {
        lfd = listener(&server);
        if (lfd < 0 || pthread_create(&acceptor_thread, NULL, acceptor, &lfd) != 0)
            return 1;
    }
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&threads[i], NULL, worker, NULL) != 0)
            return 1;
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    printf("{\"checked\": %d, \"wrong\": %d, \"errors\": %d}\n", atomic_load(&checked),
           atomic_load(&wrong), atomic_load(&errors));
    return atomic_load(&wrong) == 0 && atomic_load(&errors) == 0 ? 0 : 1;
}
