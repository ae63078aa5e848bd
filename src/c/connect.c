/* connect.c - libkeepalive.so: options set on every TCP socket before connect(2). */
#include "keepalive.h"

#include <stddef.h>
#include <sys/socket.h>

typedef int (*kp_connect_fn)(int, const struct sockaddr *, socklen_t);

__attribute__((visibility("default"))) int connect(int fd, const struct sockaddr *addr,
                                                   socklen_t len)
{
    kp_connect_fn real = (kp_connect_fn)kp_real();
    if (real == NULL)
        return -1; /* ENOSYS */
    kp_apply(fd, false);
    return real(fd, addr, len);
}
