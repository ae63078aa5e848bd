/*
 * own_keepalive - a program that chooses its own keepalive (SO_KEEPALIVE=1,
 * TCP_KEEPIDLE=61, TCP_KEEPINTVL=7) before or after the call a variant
 * interposes, and reports what the socket has, as JSON lines like probe's.
 *
 *   own_keepalive WHEN connect4 PORT   socket, [before], connect, [after]
 *   own_keepalive WHEN socket          socket, [after] (nothing comes before socket())
 *   own_keepalive WHEN listen4         socket, bind, [before], listen, print {"port": N},
 *                                      accept, [after on the accepted socket]; reports
 *                                      the accepted socket, then the listener
 *
 * WHEN: before, after, never, or off (SO_KEEPALIVE=0 after the call).
 * "set" in the report is the return value of the program's last setsockopt
 * and "set_errno" its errno.
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

#include "accept_one.h"
#include "option.h"

static int set_ret, set_errno;

static void own(int fd, const char *what)
{
    int on = strcmp(what, "off") == 0 ? 0 : 1;
    int idle = 61, intvl = 7;
    set_ret = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    if (on && set_ret == 0)
        set_ret = setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    if (on && set_ret == 0)
        set_ret = setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    set_errno = set_ret == 0 ? 0 : errno;
}

static void report(const char *call, int fd)
{
    printf("{\"call\": \"%s\", \"set\": %d, \"set_errno\": %d, ", call, set_ret, set_errno);
    print_keepalive_options(fd);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: own_keepalive before|after|never|off connect4 PORT|socket|listen4\n");
        return 2;
    }
    const char *when = argv[1], *action = argv[2];
    int before = strcmp(when, "before") == 0;
    int after = strcmp(when, "after") == 0 || strcmp(when, "off") == 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 1;
    if (strcmp(action, "socket") == 0) {
        if (after)
            own(fd, when);
        report("socket", fd);
        return 0;
    }
    if (strcmp(action, "connect4") == 0 && argc > 3) {
        a.sin_port = htons((unsigned short)atoi(argv[3]));
        if (before)
            own(fd, when);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            return 1;
        if (after)
            own(fd, when);
        report("connect", fd);
        return 0;
    }
    if (strcmp(action, "listen4") == 0) {
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
            return 1;
        if (before)
            own(fd, when);
        int conn = accept_one(fd, &a);
        if (conn < 0)
            return 1;
        if (after)
            own(conn, when);
        report("accept", conn);
        report("listen", fd);
        return 0;
    }
    fprintf(stderr, "own_keepalive: unknown action %s\n", action);
    return 2;
}
