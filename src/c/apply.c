/* apply.c - set the configured options on one socket at the interposed
 * call, following the precedence rule (keepalive.h, kp_apply). */
#include "keepalive.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

bool kp_is_tcp(int fd)
{
    int saved_errno = errno;
    int protocol = 0;
    socklen_t len = sizeof protocol;
    bool tcp = getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
               (protocol == IPPROTO_TCP || protocol == KP_IPPROTO_MPTCP);
    errno = saved_errno;
    return tcp;
}

/* Whether this variant sets option i at all. */
static bool kp_wanted(const struct kp_config *config, int i)
{
    return config->value[i] != 0 && (kp_options[i].where & kp_variant.where) != 0;
}

/* An option that means something only before the connection exists. */
static bool kp_early(int i)
{
    return (kp_options[i].live & KP_LIVE(CONNECTED)) == 0;
}

bool kp_has_early(const struct kp_config *config)
{
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        if (kp_wanted(config, i) && kp_early(i))
            return true;
    return false;
}

static bool kp_timer(int i)
{
    return i == KP_KEEPIDLE || i == KP_KEEPINTVL || i == KP_KEEPCNT;
}

/* Debug text: " NAME=VALUE" appended to a fixed buffer. */
struct kp_text {
    char buf[200];
    size_t used;
};

static void kp_note(struct kp_text *t, const char *name, int value)
{
    int n = snprintf(t->buf + t->used, sizeof t->buf - t->used, " %s=%d", name, value);
    if (n > 0 && (size_t)n < sizeof t->buf - t->used)
        t->used += (size_t)n;
}

/* Which of the ruled options the program already set on fd (before the
 * interposed call): read only when the program ever set one itself (else it
 * set none, and nothing needs reading). A value counts as the program's
 * when it is neither a fresh socket's nor ours (ours: set by an earlier
 * call of ours, e.g. a repeated connect). Returns false when fd is surely
 * not TCP (the first TCP-level read says so). */
static void kp_look(int fd, const struct kp_config *config, int *now, bool *theirs)
{
    int fresh[KP_OPTION_COUNT];
    kp_fresh_values(fresh);
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        if (!kp_options[i].ruled || !(kp_wanted(config, i) || (config->derive && kp_timer(i))))
            continue;
        socklen_t len = sizeof now[i];
        if (getsockopt(fd, IPPROTO_TCP, kp_options[i].optname, &now[i], &len) != 0)
            continue; /* refused (MPTCP): counts as not set */
        theirs[i] = now[i] != fresh[i] && now[i] != config->value[i];
    }
}

/* The options that matter only before connect(2): TCP_SYNCNT, TCP_MAXSEG.
 * The first one refused as "not TCP" ends it. */
static void kp_apply_early(int fd, const struct kp_config *config)
{
    struct kp_text done = {.used = 0};
    done.buf[0] = '\0';
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        int value = config->value[i];
        if (!kp_wanted(config, i) || !kp_early(i))
            continue;
        if (kp_setsockopt(fd, IPPROTO_TCP, kp_options[i].optname, &value, sizeof value) == 0)
            kp_note(&done, kp_options[i].variable, value);
        else if (errno == ENOPROTOOPT || errno == EOPNOTSUPP || errno == EBADF ||
                 errno == ENOTSOCK)
            break; /* not TCP, or MPTCP refusing it: quietly */
        else if (config->debug)
            kp_log("fd %d: setsockopt %s=%d: %m", fd, kp_options[i].variable, value);
    }
    if (config->debug && done.used > 0)
        kp_log("fd %d: before connect: ours:%s", fd, done.buf);
}

void kp_apply(int fd, enum kp_when when)
{
    struct kp_config scratch;
    const struct kp_config *config = kp_config(&scratch);
    if (!config->enabled)
        return;
    int saved_errno = errno;
    if (when == KP_EARLY) {
        kp_apply_early(fd, config);
        errno = saved_errno;
        return;
    }
    if (when != KP_FRESH && !kp_is_tcp(fd))
        return;

    int now[KP_OPTION_COUNT] = {0};
    bool theirs[KP_OPTION_COUNT] = {false};
    if (!config->force && when != KP_FRESH && kp_program_set_options())
        kp_look(fd, config, now, theirs);
    /* The timers the socket ends up with: the program's where it set them. */
    int timer[KP_OPTION_COUNT] = {0};
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        timer[i] = theirs[i] ? now[i] : config->value[i];
    int derived = kp_derive(timer[KP_KEEPIDLE], timer[KP_KEEPINTVL], timer[KP_KEEPCNT]);
    if (config->derive && now[KP_USER_TIMEOUT] == derived)
        theirs[KP_USER_TIMEOUT] = false; /* ours, from an earlier call */

    struct kp_text ours = {.used = 0}, program = {.used = 0};
    ours.buf[0] = program.buf[0] = '\0';
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        const struct kp_option_spec *o = &kp_options[i];
        if (!kp_wanted(config, i) || (when == KP_CONNECTED && kp_early(i)))
            continue;
        if (o->ruled && theirs[i]) {
            kp_note(&program, o->variable, now[i]);
            continue;
        }
        int value = i == KP_USER_TIMEOUT && config->derive ? derived : config->value[i];
        if (value == 0)
            continue;
        if (kp_setsockopt(fd, IPPROTO_TCP, o->optname, &value, sizeof value) == 0)
            kp_note(&ours, o->variable, value);
        else if (errno != ENOPROTOOPT && errno != EOPNOTSUPP && config->debug)
            /* ENOPROTOOPT, EOPNOTSUPP: MPTCP refusing an option, skipped quietly */
            kp_log("fd %d: setsockopt %s=%d: %m", fd, o->variable, value);
    }
    int on = 1;
    if (kp_setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == 0)
        kp_note(&ours, "SO_KEEPALIVE", 1);
    else if (config->debug)
        kp_log("fd %d: setsockopt SO_KEEPALIVE=1: %m", fd);
    if (config->debug)
        kp_log("fd %d: ours:%s%s%s", fd, ours.used > 0 ? ours.buf : " none",
               program.used > 0 ? "; the program's:" : "", program.buf);
    errno = saved_errno;
}
