/* failsockopt.so - a preload shim whose setsockopt(2) always fails with
 * EPERM, to show that a failed setsockopt never changes the intercepted
 * call's result or errno. */
#include <errno.h>
#include <sys/socket.h>

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    (void)fd, (void)level, (void)name, (void)value, (void)len;
    errno = EPERM;
    return -1;
}
