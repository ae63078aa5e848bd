/* sockopt.c - setsockopt(2), interposed only to enforce whose keepalive
 * settings win; a pass-through for every other option. */
#include "keepalive.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

/*
 * KEEPALIVE=on (the default): the program's own setsockopt of SO_KEEPALIVE,
 * TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT or TCP_USER_TIMEOUT passes
 * through: its choice wins (LIBKEEPALIVE_DEBUG says so).
 *
 * KEEPALIVE=force: the call is made with our configured value instead of the
 * program's (SO_KEEPALIVE 0 on a TCP socket becomes 1), so it succeeds for
 * the program and changes nothing; options we leave at 0 (the system
 * default) pass through. Substituting, rather than dropping the call, keeps
 * no per-socket state. The return value and errno are the real call's.
 */
__attribute__((visibility("default"))) int setsockopt(int fd, int level, int optname,
                                                      const void *optval, socklen_t optlen)
{
    kp_setsockopt_fn real = (kp_setsockopt_fn)kp_real_symbol(KP_REAL_SETSOCKOPT);
    if (real == NULL)
        return -1; /* ENOSYS */
    int option = kp_ruled_option(level, optname);
    if (option < 0)
        return real(fd, level, optname, optval, optlen);
    struct kp_config scratch;
    const struct kp_config *config = kp_config(&scratch);
    if (!config->enabled || !(config->force || config->debug) || optval == NULL ||
        optlen < (socklen_t)sizeof(int))
        return real(fd, level, optname, optval, optlen);

    int asked;
    memcpy(&asked, optval, sizeof asked);
    const char *name = kp_option_name(option);
    bool so_keepalive = option == KP_OPTION_COUNT;
    int ours = so_keepalive ? 1 : config->value[option];
    if (!config->force || ours == 0 || (so_keepalive && asked != 0) ||
        (so_keepalive && !kp_is_tcp(fd))) {
        int ret = real(fd, level, optname, optval, optlen);
        int err = errno;
        if (ret == 0 && config->debug && !config->force && (!so_keepalive || kp_is_tcp(fd)))
            kp_log("fd %d: kept the program's %s=%d", fd, name, asked);
        errno = err;
        return ret;
    }

    int ret = real(fd, level, optname, &ours, sizeof ours);
    int err = errno;
    if (config->debug) {
        if (ret == 0)
            kp_log("fd %d: overrode the program's %s=%d: %s=%d", fd, name, asked, name, ours);
        else
            kp_log("fd %d: setsockopt %s=%d (for the program's %d): %m", fd, name, ours, asked);
    }
    errno = err;
    return ret;
}
