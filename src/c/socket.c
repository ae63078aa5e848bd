/* socket.c - libkeepalive_socket.so: options set on every TCP socket that
 * socket(2) creates, client and server alike. */
#include "keepalive.h"

#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef int (*kp_socket_fn)(int, int, int);

/* TCP (or MPTCP) is told from the arguments alone: no extra system call. */
static bool kp_tcp_arguments(int domain, int type, int protocol)
{
    return (domain == AF_INET || domain == AF_INET6) &&
           (type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) == SOCK_STREAM &&
           (protocol == 0 || protocol == IPPROTO_TCP || protocol == KP_IPPROTO_MPTCP);
}

__attribute__((visibility("default"))) int socket(int domain, int type, int protocol)
{
    kp_socket_fn real = (kp_socket_fn)kp_real();
    if (real == NULL)
        return -1; /* ENOSYS */
    int fd = real(domain, type, protocol);
    if (fd >= 0 && kp_tcp_arguments(domain, type, protocol))
        kp_apply(fd, KP_FRESH);
    return fd;
}
