/*
 * probe - make one real socket call and report, as one JSON line on stdout,
 * its return value, errno, and the options read back with getsockopt.
 *
 *   probe connect4 PORT [nonblock]   TCP connect to 127.0.0.1:PORT
 *   probe connect4 PORT poll         non-blocking, then connect() again until it
 *                                    returns 0, and once more (EISCONN)
 *   probe connect6 PORT              TCP connect to [::1]:PORT
 *   probe udp PORT                   UDP connect to 127.0.0.1:PORT
 *   probe unix PATH                  AF_UNIX stream connect to PATH
 *   probe socket                     a TCP socket, no connect
 *   probe listen4 | listen6          listen on loopback, print {"port": N},
 *                                    accept one connection, report it
 *   probe badfd | notsock            connect on fd 999 / on /dev/null
 *   probe listen-udp                 listen(2) on a UDP socket
 *
 * With -q before the action nothing is read back (for counting syscalls).
 * Also built for other architectures and libcs by the release tests.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/un.h>
#include <unistd.h>

#include "option.h"

static int quiet;

static void report(const char *call, int ret, int err, int fd, int tcp)
{
    printf("{\"call\": \"%s\", \"ret\": %d, \"errno\": %d", call, ret, err);
    if (!quiet && fd >= 0) {
        printf(", \"SO_KEEPALIVE\": %d", option(fd, SOL_SOCKET, SO_KEEPALIVE));
        if (tcp) {
            static const struct { const char *name; int opt; } tcp_opts[] = {
                {"TCP_KEEPIDLE", TCP_KEEPIDLE},       {"TCP_KEEPINTVL", TCP_KEEPINTVL},
                {"TCP_KEEPCNT", TCP_KEEPCNT},         {"TCP_USER_TIMEOUT", TCP_USER_TIMEOUT},
                {"TCP_SYNCNT", TCP_SYNCNT},           {"TCP_DEFER_ACCEPT", TCP_DEFER_ACCEPT},
                {"TCP_MAXSEG", TCP_MAXSEG},           {"TCP_WINDOW_CLAMP", TCP_WINDOW_CLAMP},
            };
            for (size_t i = 0; i < sizeof tcp_opts / sizeof tcp_opts[0]; i++)
                printf(", \"%s\": %d", tcp_opts[i].name, option(fd, IPPROTO_TCP, tcp_opts[i].opt));
        }
    }
    printf("}\n");
    fflush(stdout);
}

static socklen_t loopback(int family, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((unsigned short)port);
        a->sin6_addr = in6addr_loopback;
        return sizeof *a;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof *a;
}

/* A program polling a non-blocking connect with connect() itself. */
static int do_poll_connect(int port)
{
    struct sockaddr_storage ss;
    socklen_t len = loopback(AF_INET, port, &ss);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int ret = connect(fd, (struct sockaddr *)&ss, len);
    for (int i = 0; i < 100 && ret != 0 && (errno == EINPROGRESS || errno == EALREADY); i++) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, 100);
        ret = connect(fd, (struct sockaddr *)&ss, len);
    }
    int again = connect(fd, (struct sockaddr *)&ss, len);
    report("connect", ret, again == 0 ? 0 : errno, fd, 1);
    return 0;
}

static int do_connect(int family, int type, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, port, &ss);
    int fd = socket(family, type, 0);
    if (fd < 0) {
        report("socket", fd, errno, -1, 0);
        return 1;
    }
    int ret = connect(fd, (struct sockaddr *)&ss, len);
    int err = ret == 0 ? 0 : errno;
    report("connect", ret, err, fd, (type & SOCK_STREAM) == SOCK_STREAM);
    return 0;
}

static int do_listen(int family)
{
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, 0, &ss);
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0) {
        report("bind", -1, errno, -1, 0);
        return 1;
    }
    int ret = listen(fd, 8);
    if (ret != 0) {
        report("listen", ret, errno, -1, 0);
        return 1;
    }
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    int port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                        : ((struct sockaddr_in *)&ss)->sin_port);
    printf("{\"port\": %d}\n", port);
    fflush(stdout);
    int conn = accept(fd, NULL, NULL);
    report("accept", conn < 0 ? -1 : 0, conn < 0 ? errno : 0, conn, 1);
    report("listen", ret, 0, fd, 1);
    return 0;
}

int main(int argc, char **argv)
{
    int arg = 1;
    if (arg < argc && strcmp(argv[arg], "-q") == 0) {
        quiet = 1;
        arg++;
    }
    if (arg >= argc) {
        fprintf(stderr, "usage: probe [-q] ACTION [ARGS]\n");
        return 2;
    }
    const char *action = argv[arg++];
    int port = arg < argc ? atoi(argv[arg]) : 0;

    if (strcmp(action, "connect4") == 0 && arg + 1 < argc && strcmp(argv[arg + 1], "poll") == 0)
        return do_poll_connect(port);
    if (strcmp(action, "connect4") == 0) {
        int nonblock = arg + 1 < argc && strcmp(argv[arg + 1], "nonblock") == 0;
        return do_connect(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), port);
    }
    if (strcmp(action, "connect6") == 0)
        return do_connect(AF_INET6, SOCK_STREAM, port);
    if (strcmp(action, "udp") == 0)
        return do_connect(AF_INET, SOCK_DGRAM, port);
    if (strcmp(action, "listen4") == 0)
        return do_listen(AF_INET);
    if (strcmp(action, "listen6") == 0)
        return do_listen(AF_INET6);
    if (strcmp(action, "socket") == 0) {
        errno = EDOM; /* a successful call leaves errno as it was */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        report("socket", fd < 0 ? -1 : 0, errno, fd, 1);
        return 0;
    }
    if (strcmp(action, "unix") == 0 && arg < argc) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof un.sun_path, "%s", argv[arg]);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        int ret = connect(fd, (struct sockaddr *)&un, sizeof un);
        report("connect", ret, ret == 0 ? 0 : errno, fd, 0);
        return 0;
    }
    if (strcmp(action, "badfd") == 0 || strcmp(action, "notsock") == 0) {
        struct sockaddr_storage ss;
        socklen_t len = loopback(AF_INET, 9, &ss);
        int fd = strcmp(action, "badfd") == 0 ? 999 : open("/dev/null", O_RDONLY);
        int ret = connect(fd, (struct sockaddr *)&ss, len);
        report("connect", ret, ret == 0 ? 0 : errno, -1, 0);
        return 0;
    }
    if (strcmp(action, "listen-udp") == 0) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        int ret = listen(fd, 1);
        report("listen", ret, ret == 0 ? 0 : errno, fd, 0);
        return 0;
    }
    fprintf(stderr, "probe: unknown action %s\n", action);
    return 2;
}
