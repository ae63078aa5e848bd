/*
 * count_connect.so - an unrelated preload library that also interposes
 * connect(2): it counts the calls, passes them on with dlsym(RTLD_NEXT), and
 * prints the count at exit. Used to show that preload libraries compose.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int calls;

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    int (*next)(int, const struct sockaddr *, socklen_t) =
        (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    calls++;
    return next(fd, addr, len);
}

__attribute__((destructor)) static void report(void)
{
    fprintf(stderr, "count_connect: %d\n", calls);
}
