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
    bool ruled; /* the precedence rule covers it (options.def: KP_RULED) */
};

static const struct kp_sockopt kp_sockopts[KP_OPTION_COUNT] = {
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, rule, \
                  live, bpf_at, bpf_since, help)                                              \
    [KP_##id] = {#optname, optname, where, rule},
#include "options.def"
#undef KP_OPTION
};

/* Errors with which a TCP-level option is refused by a socket that is not
 * TCP (UDP: ENOPROTOOPT; AF_UNIX: EOPNOTSUPP) or is no socket at all. */
static bool kp_not_tcp(int err)
{
    return err == ENOPROTOOPT || err == EOPNOTSUPP || err == EBADF || err == ENOTSOCK;
}

bool kp_is_tcp(int fd)
{
    int saved_errno = errno;
    int protocol = 0;
    socklen_t len = sizeof protocol;
    bool tcp = getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
               protocol == IPPROTO_TCP;
    errno = saved_errno;
    return tcp;
}

int kp_ruled_option(int level, int optname)
{
    if (level == SOL_SOCKET)
        return optname == SO_KEEPALIVE ? KP_OPTION_COUNT : -1;
    if (level != IPPROTO_TCP)
        return -1;
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        if (kp_sockopts[i].ruled && kp_sockopts[i].optname == optname)
            return i;
    return -1;
}

/* Append " NAME=VALUE" to the debug text done[used..]. */
static void kp_note(char *done, size_t size, size_t *used, const char *name, int value)
{
    int n = snprintf(done + *used, size - *used, " %s=%d", name, value);
    if (n > 0 && (size_t)n < size - *used)
        *used += (size_t)n;
}

/* Debug output for a socket whose keepalive the program chose itself: the
 * values read back from the socket, so the line says what it really has. */
static void kp_log_kept(int fd, const char *done)
{
    char kept[160];
    size_t used = 0;
    kept[0] = '\0';
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        int value = 0;
        socklen_t len = sizeof value;
        if (kp_sockopts[i].ruled &&
            getsockopt(fd, IPPROTO_TCP, kp_sockopts[i].optname, &value, &len) == 0)
            kp_note(kept, sizeof kept, &used, kp_sockopts[i].name, value);
    }
    kp_log("fd %d: kept the program's SO_KEEPALIVE=1%s%s%s", fd, kept,
           done[0] != '\0' ? "; set" : "", done);
}

void kp_apply(int fd, bool fresh)
{
    struct kp_config scratch;
    const struct kp_config *config = kp_config(&scratch);
    if (!config->enabled)
        return;

    int saved_errno = errno;
    char done[256];
    size_t used = 0;
    done[0] = '\0';
    bool tested = fresh;

    /* KEEPALIVE=on: did the program turn keepalive on itself? Then its
     * keepalive options stay as it chose them. */
    bool kept = false;
    if (!fresh && !config->force) {
        int on = 0;
        socklen_t len = sizeof on;
        if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len) != 0) {
            errno = saved_errno; /* not a socket at all */
            return;
        }
        kept = on != 0;
    }

    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        const struct kp_sockopt *o = &kp_sockopts[i];
        int value = config->value[i];
        if (value == 0 || !(o->where & kp_variant.where) || (kept && kp_sockopts[i].ruled))
            continue;
        if (kp_setsockopt(fd, IPPROTO_TCP, o->optname, &value, sizeof value) == 0) {
            kp_note(done, sizeof done, &used, o->name, value);
        } else if (!tested && kp_not_tcp(errno)) {
            errno = saved_errno;
            return;
        } else if (config->debug) {
            kp_log("fd %d: setsockopt %s=%d: %m", fd, o->name, value);
        }
        tested = true;
    }
    if (kept) {
        if (config->debug && (tested || kp_is_tcp(fd)))
            kp_log_kept(fd, done);
        errno = saved_errno;
        return;
    }
    if (!tested && !kp_is_tcp(fd)) {
        errno = saved_errno;
        return;
    }

    int on = 1;
    if (kp_setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == 0) {
        if (config->debug)
            kp_log("fd %d: SO_KEEPALIVE=1%s", fd, done);
    } else if (config->debug) {
        kp_log("fd %d: setsockopt SO_KEEPALIVE=1: %m", fd);
        if (used > 0)
            kp_log("fd %d:%s", fd, done);
    }
    errno = saved_errno;
}
