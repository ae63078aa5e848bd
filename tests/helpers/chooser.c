/*
 * chooser - a program that chooses some of its keepalive options itself,
 * before or after the call a variant interposes, and reports what its socket
 * has, read back with getsockopt, as one JSON line.
 *
 *   chooser WHAT WHEN connect4 PORT   socket, [before], connect, [after]
 *   chooser WHAT WHEN listen4         socket, bind, [before], listen, print
 *                                     {"port": N}, accept, [after, on the
 *                                     accepted socket]; reports the accepted
 *                                     socket, then the listener
 *   chooser WHAT WHEN mptcp PORT      as connect4 on an MPTCP socket
 *
 * WHAT: nothing, keepalive (SO_KEEPALIVE=1: libpq, Java), user_timeout
 * (TCP_USER_TIMEOUT=5000), timers (SO_KEEPALIVE=1, idle 2, interval 1,
 * count 2), off (SO_KEEPALIVE=0). WHEN: before or after.
 * "set"/"set_errno": the program's last setsockopt's result and errno.
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
#include <unistd.h>

#include "option.h"

static int set_ret, set_errno;

static void set(int fd, int level, int name, int value)
{
    if (set_ret != 0)
        return;
    set_ret = setsockopt(fd, level, name, &value, sizeof value);
    set_errno = set_ret == 0 ? 0 : errno;
}

static void choose(int fd, const char *what)
{
    if (strcmp(what, "keepalive") == 0) {
        set(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
    } else if (strcmp(what, "user_timeout") == 0) {
        set(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 5000);
    } else if (strcmp(what, "timers") == 0) {
        set(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
        set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 2);
        set(fd, IPPROTO_TCP, TCP_KEEPINTVL, 1);
        set(fd, IPPROTO_TCP, TCP_KEEPCNT, 2);
    } else if (strcmp(what, "off") == 0) {
        set(fd, SOL_SOCKET, SO_KEEPALIVE, 0);
    }
}

static void report(int fd)
{
    printf("{\"fd\": %d, \"set\": %d, \"set_errno\": %d, \"SO_KEEPALIVE\": %d, "
           "\"TCP_KEEPIDLE\": %d, \"TCP_KEEPINTVL\": %d, \"TCP_KEEPCNT\": %d, "
           "\"TCP_USER_TIMEOUT\": %d}\n",
           fd, set_ret, set_errno, option(fd, SOL_SOCKET, SO_KEEPALIVE),
           option(fd, IPPROTO_TCP, TCP_KEEPIDLE), option(fd, IPPROTO_TCP, TCP_KEEPINTVL),
           option(fd, IPPROTO_TCP, TCP_KEEPCNT), option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: chooser WHAT before|after connect4 PORT|listen4|mptcp PORT\n");
        return 2;
    }
    const char *what = argv[1], *action = argv[3];
    int before = strcmp(argv[2], "before") == 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int protocol = strcmp(action, "mptcp") == 0 ? 262 : 0;
    int fd = socket(AF_INET, SOCK_STREAM, protocol);
    if (fd < 0) {
        perror("chooser: socket");
        return 1;
    }
    if (argc > 4 && (strcmp(action, "connect4") == 0 || protocol != 0)) {
        a.sin_port = htons((unsigned short)atoi(argv[4]));
        if (before)
            choose(fd, what);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            perror("chooser: connect");
            return 1;
        }
        if (!before)
            choose(fd, what);
        report(fd);
        return 0;
    }
    if (strcmp(action, "listen4") == 0) {
        socklen_t len = sizeof a;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
            return 1;
        if (before)
            choose(fd, what);
        if (listen(fd, 8) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
            return 1;
        printf("{\"port\": %d}\n", ntohs(a.sin_port));
        fflush(stdout);
        int conn = accept(fd, NULL, NULL);
        if (conn < 0)
            return 1;
        if (!before)
            choose(conn, what);
        report(conn);
        report(fd);
        return 0;
    }
    fprintf(stderr, "chooser: unknown action %s\n", action);
    return 2;
}
