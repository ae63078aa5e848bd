/*
 * static_peer - one end of an idle TCP connection, built with -static for the
 * cgroup mode tests (LD_PRELOAD never reaches it). Reports JSON lines:
 *
 *   static_peer connect HOST PORT [own]   connect, report, block in recv
 *   static_peer listen HOST PORT [own]    listen ({"event": "listening", "port": N}),
 *                                         accept one, report, block in recv
 *
 * "own": the program turns keepalive on itself (SO_KEEPALIVE, TCP_KEEPIDLE 100)
 * before connect, or on the listener (accepted sockets inherit it).
 * After {"event": "connected", options...} it blocks in recv() until the
 * connection ends: {"event": "closed", "errno": "ETIMEDOUT"|"EOF"|..., "elapsed": s}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "option.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void own_keepalive(int fd)
{
    int on = 1, idle = 100;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0) {
        perror("setsockopt");
        exit(1);
    }
}

static const char *error_name(int err)
{
    switch (err) {
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNRESET: return "ECONNRESET";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    default: return "other";
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: static_peer connect|listen HOST PORT [own]\n");
        return 2;
    }
    int listening = strcmp(argv[1], "listen") == 0;
    int own = argc > 4 && strcmp(argv[4], "own") == 0;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "static_peer: bad address %s\n", argv[2]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    if (own)
        own_keepalive(fd);
    if (listening) {
        int on = 1;
        socklen_t len = sizeof addr;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1) != 0 ||
            getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
            perror("listen");
            return 1;
        }
        printf("{\"event\": \"listening\", \"port\": %d}\n", ntohs(addr.sin_port));
        fflush(stdout);
        int conn = accept(fd, NULL, NULL);
        if (conn < 0) {
            perror("accept");
            return 1;
        }
        fd = conn;
    } else if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        return 1;
    }
    double start = now();
    printf("{\"event\": \"connected\", \"SO_KEEPALIVE\": %d, \"TCP_KEEPIDLE\": %d, "
           "\"TCP_KEEPINTVL\": %d, \"TCP_KEEPCNT\": %d, \"TCP_USER_TIMEOUT\": %d, "
           "\"TCP_SYNCNT\": %d, \"TCP_MAXSEG\": %d}\n",
           option(fd, SOL_SOCKET, SO_KEEPALIVE), option(fd, IPPROTO_TCP, TCP_KEEPIDLE),
           option(fd, IPPROTO_TCP, TCP_KEEPINTVL), option(fd, IPPROTO_TCP, TCP_KEEPCNT),
           option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), option(fd, IPPROTO_TCP, TCP_SYNCNT),
           option(fd, IPPROTO_TCP, TCP_MAXSEG));
    fflush(stdout);
    char buf[4096];
    for (;;) {
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got > 0)
            continue;
        int err = got < 0 ? errno : 0;
        if (err == EINTR)
            continue;
        printf("{\"event\": \"closed\", \"errno\": \"%s\", \"elapsed\": %.3f}\n",
               err ? error_name(err) : "EOF", now() - start);
        return 0;
    }
}
