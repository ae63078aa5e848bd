/* apply.c - set the configured options on one socket. */
#include "keepalive.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

struct kp_sockopt {
    const char *name;
    int optname;
    unsigned where;
};

static const struct kp_sockopt kp_sockopts[KP_OPTION_COUNT] = {
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, help) \
    [KP_##id] = {#optname, optname, where},
#include "options.def"
#undef KP_OPTION
};

/* Errors with which a TCP-level option is refused by a socket that is not
 * TCP (UDP: ENOPROTOOPT; AF_UNIX: EOPNOTSUPP) or is no socket at all. */
static bool kp_not_tcp(int err)
{
    return err == ENOPROTOOPT || err == EOPNOTSUPP || err == EBADF || err == ENOTSOCK;
}

/* Without any TCP-level option to serve as the test, ask the socket. */
static bool kp_is_tcp(int fd)
{
    int protocol = 0;
    socklen_t len = sizeof protocol;
    return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
           protocol == IPPROTO_TCP;
}

void kp_apply(int fd, bool known_tcp)
{
    struct kp_config scratch;
    const struct kp_config *config = kp_config(&scratch);
    if (!config->enabled)
        return;

    int saved_errno = errno;
    char done[256];
    size_t used = 0;
    done[0] = '\0';
    bool tested = known_tcp;

    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        const struct kp_sockopt *o = &kp_sockopts[i];
        int value = config->value[i];
        if (value == 0 || !(o->where & kp_variant.where))
            continue;
        if (setsockopt(fd, IPPROTO_TCP, o->optname, &value, sizeof value) == 0) {
            int n = snprintf(done + used, sizeof done - used, " %s=%d", o->name, value);
            if (n > 0 && (size_t)n < sizeof done - used)
                used += (size_t)n;
        } else if (!tested && kp_not_tcp(errno)) {
            errno = saved_errno;
            return;
        } else if (config->debug) {
            kp_log("fd %d: setsockopt %s=%d: %m", fd, o->name, value);
        }
        tested = true;
    }
    if (!tested && !kp_is_tcp(fd)) {
        errno = saved_errno;
        return;
    }

    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == 0) {
        if (config->debug)
            kp_log("fd %d: SO_KEEPALIVE=1%s", fd, done);
    } else if (config->debug) {
        kp_log("fd %d: setsockopt SO_KEEPALIVE=1: %m", fd);
        if (used > 0)
            kp_log("fd %d:%s", fd, done);
    }
    errno = saved_errno;
}
