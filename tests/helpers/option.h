/* option.h - for the test helpers: one int socket option read back with
 * getsockopt(2), or -1 when it cannot be read; and the five keepalive options
 * of a socket as the rest of a JSON object. */
#ifndef KP_TEST_OPTION_H
#define KP_TEST_OPTION_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

static int option(int fd, int level, int name)
{
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -1;
}

/* Prints `"SO_KEEPALIVE": N, ..., "TCP_USER_TIMEOUT": N}` and a newline: the
 * end of the JSON line whose start the caller printed. */
static inline void print_keepalive_options(int fd)
{
    printf("\"SO_KEEPALIVE\": %d, \"TCP_KEEPIDLE\": %d, \"TCP_KEEPINTVL\": %d, "
           "\"TCP_KEEPCNT\": %d, \"TCP_USER_TIMEOUT\": %d}\n",
           option(fd, SOL_SOCKET, SO_KEEPALIVE), option(fd, IPPROTO_TCP, TCP_KEEPIDLE),
           option(fd, IPPROTO_TCP, TCP_KEEPINTVL), option(fd, IPPROTO_TCP, TCP_KEEPCNT),
           option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
}

#endif
