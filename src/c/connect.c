/* connect.c - libkeepalive.so: options set on every TCP socket the program
 * connects. */
#include "keepalive.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*kp_connect_fn)(int, const struct sockaddr *, socklen_t);

/* Whether the address the kernel just accepted is IPv4 or IPv6. Read only
 * after the real call took it (a bad pointer gets EFAULT from the kernel,
 * never a crash here), and only its family. */
static bool kp_inet(const struct sockaddr *addr, socklen_t len)
{
    sa_family_t family;
    if (addr == NULL || len < (socklen_t)sizeof family)
        return false;
    memcpy(&family, addr, sizeof family);
    return family == AF_INET || family == AF_INET6;
}

/*
 * The options are set once the kernel accepted the connect (0, EINPROGRESS
 * for a non-blocking one, EINTR), on IPv4/IPv6 sockets only: an
 * AF_UNIX connect costs nothing, a UDP one one getsockopt. Options
 * that only matter before the connection exists (TCP_SYNCNT, TCP_MAXSEG),
 * when configured, are set before the call. A repeated connect on the same
 * socket (EALREADY, EISCONN: a program polling a non-blocking connect)
 * changes nothing.
 */
__attribute__((visibility("default"))) int connect(int fd, const struct sockaddr *addr,
                                                   socklen_t len)
{
    kp_connect_fn real = (kp_connect_fn)kp_real();
    if (real == NULL)
        return -1; /* ENOSYS */
    struct kp_config scratch;
    const struct kp_config *config = kp_config(&scratch);
    if (!config->enabled)
        return real(fd, addr, len);
    if (kp_has_early(config))
        kp_apply(fd, KP_EARLY);
    int ret = real(fd, addr, len);
    int err = errno;
    /* EINTR: a blocking connect interrupted by a signal goes on in the background. */
    if ((ret == 0 || err == EINPROGRESS || err == EINTR) && kp_inet(addr, len))
        kp_apply(fd, KP_CONNECTED);
    else if ((err == EALREADY || err == EISCONN) && config->debug && kp_inet(addr, len))
        kp_log("fd %d: connect repeated (%s): options left as they are", fd,
               err == EALREADY ? "EALREADY" : "EISCONN");
    errno = err;
    return ret;
}
