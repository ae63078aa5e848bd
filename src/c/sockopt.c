/* sockopt.c - setsockopt(2), interposed only to enforce whose keepalive
 * settings win; a pass-through for every other option. */
#include "keepalive.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

/* The program's value, once the real call accepted the pointer. */
static int kp_asked(const void *optval, socklen_t optlen)
{
    int asked = 0;
    if (optval != NULL && optlen >= (socklen_t)sizeof asked)
        memcpy(&asked, optval, sizeof asked);
    return asked;
}

static int kp_get(int fd, int optname, int *value)
{
    socklen_t len = sizeof *value;
    return getsockopt(fd, IPPROTO_TCP, optname, value, &len);
}

/* The socket's user timeout and timers, when the user timeout on it is the
 * one derived from its timers (ours, KEEPALIVE=on with TCP_USER_TIMEOUT=-1):
 * then it must follow the program's change of a timer. */
struct kp_follow {
    int user_timeout;
    int timer[KP_OPTION_COUNT];
};

static bool kp_derived_here(int fd, struct kp_follow *f)
{
    if (kp_get(fd, TCP_USER_TIMEOUT, &f->user_timeout) != 0 || f->user_timeout == 0)
        return false;
    int *t = f->timer;
    return kp_get(fd, TCP_KEEPIDLE, &t[KP_KEEPIDLE]) == 0 &&
           kp_get(fd, TCP_KEEPINTVL, &t[KP_KEEPINTVL]) == 0 &&
           kp_get(fd, TCP_KEEPCNT, &t[KP_KEEPCNT]) == 0 &&
           f->user_timeout == kp_derive(t[KP_KEEPIDLE], t[KP_KEEPINTVL], t[KP_KEEPCNT]);
}

/*
 * KEEPALIVE=on (the default): the program's own setsockopt of a ruled
 * option passes through: its value wins. The first one raises the
 * per-process flag that tells kp_apply to look at what a socket has. When
 * the program changes a keepalive timer on a socket whose user timeout was
 * derived from its timers, the user timeout follows (one setsockopt).
 */
static int kp_program_wins(kp_setsockopt_fn real, const struct kp_config *config, int fd,
                           int level, int optname, const void *optval, socklen_t optlen,
                           int option)
{
    kp_program_sets_options();
    int saved_errno = errno;
    struct kp_follow f;
    bool follow = config->derive &&
                  (option == KP_KEEPIDLE || option == KP_KEEPINTVL || option == KP_KEEPCNT) &&
                  kp_derived_here(fd, &f);
    errno = saved_errno;
    int ret = real(fd, level, optname, optval, optlen);
    if (ret != 0 || !(follow || config->debug))
        return ret;
    int asked = kp_asked(optval, optlen);
    const char *name = kp_option_name(option);
    if (follow) {
        f.timer[option] = asked;
        int value = kp_derive(f.timer[KP_KEEPIDLE], f.timer[KP_KEEPINTVL], f.timer[KP_KEEPCNT]);
        if (value != f.user_timeout && value != 0) {
            if (kp_setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &value, sizeof value) != 0)
                follow = false;
            if (config->debug && follow)
                kp_log("fd %d: the program's %s=%d; ours TCP_USER_TIMEOUT=%d (derived from the "
                       "socket's timers)", fd, name, asked, value);
            else if (config->debug)
                kp_log("fd %d: the program's %s=%d; setsockopt TCP_USER_TIMEOUT=%d: %m", fd,
                       name, asked, value);
            errno = saved_errno;
            return 0;
        }
    }
    if (config->debug && (option != KP_OPTION_COUNT || kp_is_tcp(fd)))
        kp_log("fd %d: the program's %s=%d", fd, name, asked);
    errno = saved_errno;
    return 0;
}

/*
 * KEEPALIVE=force: the program's call is made as it asked (so a bad pointer
 * gives it EFAULT, exactly as without us), and then, if it succeeded, with
 * our configured value instead (SO_KEEPALIVE 0 on a TCP socket becomes 1):
 * it succeeds for the program and changes nothing; options we leave at 0
 * (the system default) are the program's. No per-socket state. The return
 * value and errno are the real call's.
 */
static int kp_ours_win(kp_setsockopt_fn real, const struct kp_config *config, int fd, int level,
                       int optname, const void *optval, socklen_t optlen, int option)
{
    int ret = real(fd, level, optname, optval, optlen);
    if (ret != 0)
        return ret;
    int saved_errno = errno;
    int asked = kp_asked(optval, optlen);
    bool so_keepalive = option == KP_OPTION_COUNT;
    int ours = so_keepalive ? 1 : config->value[option];
    if (ours == 0 || (so_keepalive ? asked != 0 : asked == ours) ||
        (so_keepalive && !kp_is_tcp(fd)))
        return 0;
    const char *name = kp_option_name(option);
    if (kp_setsockopt(fd, level, optname, &ours, sizeof ours) == 0) {
        if (config->debug)
            kp_log("fd %d: overrode the program's %s=%d: %s=%d", fd, name, asked, name, ours);
    } else if (config->debug) {
        kp_log("fd %d: setsockopt %s=%d (for the program's %d): %m", fd, name, ours, asked);
    }
    errno = saved_errno;
    return 0;
}

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
    if (!config->enabled)
        return real(fd, level, optname, optval, optlen);
    if (config->force)
        return kp_ours_win(real, config, fd, level, optname, optval, optlen, option);
    return kp_program_wins(real, config, fd, level, optname, optval, optlen, option);
}
