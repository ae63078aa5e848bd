/* config.c - the configuration, read once at load: built-in defaults, then
 * the configuration file, then the environment. */
#include "keepalive.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <unistd.h>

static const char *kp_environment(void *context, const char *name)
{
    (void)context;
    return secure_getenv(name);
}

/* With LIBKEEPALIVE_DEBUG, after any warnings: the one line that says what
 * this process configured (`keepalive_preload.hostconfig` reads it; one
 * parser of the file, this one). TCP_USER_TIMEOUT is -1 when derived. */
static void kp_config_report(const struct kp_config *config)
{
    char line[400];
    int used = snprintf(line, sizeof line, "configuration: KEEPALIVE=%s",
                        !config->enabled ? "off" : config->force ? "force" : "on");
    for (int i = 0; i < KP_OPTION_COUNT && used > 0 && (size_t)used < sizeof line; i++)
        used += snprintf(line + used, sizeof line - (size_t)used, " %s=%d",
                         kp_option_name(i), config->value[i]);
    kp_log("%s", line);
}

/*
 * Lowest to highest priority: the built-in defaults, the configuration file
 * (KEEPALIVE_CONFIG, or /etc/keepalive-preload.conf), the environment. In
 * secure-execution mode (setuid, setgid, file capabilities) the environment
 * is not read at all, KEEPALIVE_CONFIG included, and nothing is printed;
 * the file in /etc, which only root can write, still applies.
 */
static void kp_config_read(struct kp_config *config, bool warn)
{
    bool secure = getauxval(AT_SECURE) != 0;
    if (secure)
        warn = false;
    kp_config_defaults(config);

    const char *path = KP_CONFFILE_DEFAULT;
    bool missing_ok = true;
    unsigned owner = 0;
    if (!secure) {
        const char *chosen = secure_getenv("KEEPALIVE_CONFIG");
        if (chosen != NULL) {
            path = *chosen != '\0' ? chosen : NULL; /* empty: no file at all */
            missing_ok = false;
            owner = (unsigned)getuid();
        }
    }
    if (path != NULL)
        kp_conffile_read(config, path, owner, missing_ok, program_invocation_short_name, warn);
    if (!secure)
        kp_config_apply(config, kp_environment, NULL, warn);
    if (secure)
        config->debug = false;
    if (warn)
        kp_warn_summary();
    if (warn && config->debug)
        kp_config_report(config);
    kp_config_finish(config);
}

/*
 * Read once, without locks: the first caller (normally the constructor)
 * fills the shared copy and prints the warnings. A call that races with it
 * (another thread, before the constructor finished) reads the configuration
 * into the caller's `scratch`, quietly, rather than wait.
 */
static struct kp_config kp_shared;
static atomic_int kp_state; /* 0: unread, 1: being read, 2: ready */

const struct kp_config *kp_config(struct kp_config *scratch)
{
    if (atomic_load_explicit(&kp_state, memory_order_acquire) == 2)
        return &kp_shared;
    int expected = 0;
    if (atomic_compare_exchange_strong_explicit(&kp_state, &expected, 1, memory_order_acquire,
                                                memory_order_acquire)) {
        kp_config_read(&kp_shared, true);
        atomic_store_explicit(&kp_state, 2, memory_order_release);
        return &kp_shared;
    }
    if (expected == 2)
        return &kp_shared;
    kp_config_read(scratch, false);
    return scratch;
}

__attribute__((constructor)) static void kp_load(void)
{
    int saved_errno = errno;
    struct kp_config scratch;
    (void)kp_config(&scratch);
    (void)kp_real();
    (void)kp_real_symbol(KP_REAL_SETSOCKOPT);
    errno = saved_errno;
}
