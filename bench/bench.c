/*
 * bench - time one socket operation, N times, and print the median
 * nanoseconds of one operation (each iteration is timed on its own, so a
 * stall caused by the rest of a shared machine does not skew the figure).
 *
 *   bench OP N
 *
 *   tcp          socket + connect + close, TCP on loopback (a thread accepts)
 *   tcp-manual   the same, with the library's default setsockopt calls made
 *                by hand (SO_KEEPALIVE, idle, interval, count, user timeout):
 *                the floor, the kernel work the library must cause
 *   tcp-own      the same, the program setting its own keepalive after
 *                connect (SO_KEEPALIVE, idle 2, interval 1, count 2), as
 *                redis or Node do: the precedence rule's path
 *   udp          socket + connect + close, UDP on loopback
 *   unix         socket + connect + close, AF_UNIX stream (a thread accepts)
 *   accept       a client connects, the listener accepts, both close
 *   spawn        posix_spawn + wait of /bin/true (process start-up)
 *   nodelay      setsockopt(TCP_NODELAY) on one TCP socket: the interposed
 *                setsockopt's pass-through of an option it does not rule
 *   keepidle     setsockopt(TCP_KEEPIDLE) on one TCP socket: an option the
 *                precedence rule looks at (passed through with KEEPALIVE=on)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int listener_fd;

static void *acceptor(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(listener_fd, NULL, NULL);
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void manual_options(int fd)
{
    static const int opts[][3] = {
        {IPPROTO_TCP, TCP_KEEPIDLE, 15}, {IPPROTO_TCP, TCP_KEEPINTVL, 15},
        {IPPROTO_TCP, TCP_KEEPCNT, 9}, {IPPROTO_TCP, TCP_USER_TIMEOUT, 150000},
        {SOL_SOCKET, SO_KEEPALIVE, 1},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        setsockopt(fd, opts[i][0], opts[i][1], &opts[i][2], sizeof(int));
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench OP N\n");
        return 2;
    }
    const char *op = argv[1];
    long n = atol(argv[2]);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    socklen_t len = sizeof in;
    int unix_op = strcmp(op, "unix") == 0;
    int tcp_op = strncmp(op, "tcp", 3) == 0 || strcmp(op, "accept") == 0;

    if (tcp_op || unix_op) {
        if (unix_op) {
            snprintf(un.sun_path, sizeof un.sun_path, "/tmp/kp-bench-%d", (int)getpid());
            unlink(un.sun_path);
        }
        listener_fd = socket(unix_op ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
        if (unix_op ? bind(listener_fd, (struct sockaddr *)&un, sizeof un)
                    : bind(listener_fd, (struct sockaddr *)&in, sizeof in))
            return 1;
        listen(listener_fd, 4096);
        getsockname(listener_fd, (struct sockaddr *)&in, &len);
        pthread_t thread;
        if (strcmp(op, "accept") != 0 && pthread_create(&thread, NULL, acceptor, NULL) != 0)
            return 1;
    }
    if (strcmp(op, "udp") == 0)
        in.sin_port = htons(9);

    long long *times = calloc((size_t)n, sizeof *times);
    if (n < 1 || times == NULL)
        return 2;
    int sockopt = strcmp(op, "nodelay") == 0 ? TCP_NODELAY
                  : strcmp(op, "keepidle") == 0 ? TCP_KEEPIDLE : 0;
    int sockopt_fd = sockopt ? socket(AF_INET, SOCK_STREAM, 0) : -1;
    for (long i = 0; i < n; i++) {
        long long start = now_ns();
        if (sockopt) {
            int value = sockopt == TCP_NODELAY ? 1 : 30;
            if (setsockopt(sockopt_fd, IPPROTO_TCP, sockopt, &value, sizeof value) != 0)
                return 1;
            times[i] = now_ns() - start;
            continue;
        }
        if (strcmp(op, "spawn") == 0) {
            pid_t pid;
            char *args[] = {"/bin/true", NULL};
            if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, environ) != 0)
                return 1;
            waitpid(pid, NULL, 0);
            times[i] = now_ns() - start;
            continue;
        }
        int fd = socket(unix_op ? AF_UNIX : AF_INET,
                        strcmp(op, "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (strcmp(op, "tcp-manual") == 0)
            manual_options(fd);
        int rc = unix_op ? connect(fd, (struct sockaddr *)&un, sizeof un)
                         : connect(fd, (struct sockaddr *)&in, sizeof in);
        if (rc != 0)
            return 1;
        if (strcmp(op, "tcp-own") == 0) {
            int on = 1, idle = 2, intvl = 1, cnt = 2;
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
        }
        if (strcmp(op, "accept") == 0) {
            int conn = accept(listener_fd, NULL, NULL);
            if (conn < 0)
                return 1;
            close(conn);
        }
        close(fd);
        times[i] = now_ns() - start;
    }
    if (unix_op)
        unlink(un.sun_path);
    qsort(times, (size_t)n, sizeof *times, by_value);
    printf("%lld\n", times[n / 2]);
    return 0;
}
