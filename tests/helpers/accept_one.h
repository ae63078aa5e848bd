/* accept_one.h - for the test helpers: listen on a bound loopback socket, say
 * on which port ({"port": N} on stdout), and accept one connection. */
#ifndef KP_TEST_ACCEPT_ONE_H
#define KP_TEST_ACCEPT_ONE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

/* The accepted socket, or -1. `a` is the address fd is bound to; it gets the
 * port the kernel chose. */
static inline int accept_one(int fd, struct sockaddr_in *a)
{
    socklen_t len = sizeof *a;
    if (listen(fd, 8) != 0 || getsockname(fd, (struct sockaddr *)a, &len) != 0)
        return -1;
    printf("{\"port\": %d}\n", ntohs(a->sin_port));
    fflush(stdout);
    return accept(fd, NULL, NULL);
}

#endif
