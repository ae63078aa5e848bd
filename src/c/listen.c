/* listen.c - libkeepalive_listen.so: options set on every TCP listener before
 * listen(2); the sockets accept(2) returns inherit them. */
#include "keepalive.h"

#include <stddef.h>
#include <sys/socket.h>

typedef int (*kp_listen_fn)(int, int);

__attribute__((visibility("default"))) int listen(int fd, int backlog)
{
    kp_listen_fn real = (kp_listen_fn)kp_real();
    if (real == NULL)
        return -1; /* ENOSYS */
    kp_apply(fd, KP_LISTENING);
    return real(fd, backlog);
}
