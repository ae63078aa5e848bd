/* config.c - the configuration: built-in defaults, then the configuration
 * file, then the environment; read once at load. */
#include "keepalive.h"
#include "parse.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

struct kp_spec {
    const char *variable;
    const char *alias;
    long min;
    long max;
    long special;
    int fallback;
};

static const struct kp_spec kp_specs[KP_OPTION_COUNT] = {
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, rule, \
                  live, bpf_at, bpf_since, help)                                              \
    [KP_##id] = {variable, alias, min, max, special, dflt},
#include "options.def"
#undef KP_OPTION
};

/* Derive TCP_USER_TIMEOUT from the keepalive timers, as msantos/libkeepalive
 * does: with the defaults (15 + 15 * 9) s = 150000 ms. Computed in long long
 * and saturated, so 32767 + 32767 * 127 s does not overflow an int. */
static int kp_derive_user_timeout(const int *value)
{
    long long idle = value[KP_KEEPIDLE];
    long long intvl = value[KP_KEEPINTVL];
    long long cnt = value[KP_KEEPCNT];
    if (idle == 0 || intvl == 0 || cnt == 0)
        return 0;
    long long ms = (idle + intvl * cnt) * 1000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* A copy of `text` fit for one line of a message: control characters and
 * bytes outside ASCII become '?', and a long value is cut with "...". */
static void kp_printable(char *out, size_t size, const char *text)
{
    size_t n = 0;
    for (; text[n] != '\0' && n + 4 < size; n++) {
        unsigned char c = (unsigned char)text[n];
        out[n] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (text[n] != '\0') {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* "PATH:LINE: " for a value from a file, "" for the environment. */
static void kp_where(char *out, size_t size, const struct kp_origin *origin)
{
    out[0] = '\0';
    if (origin != NULL && origin->path != NULL) {
        char path[200];
        kp_printable(path, sizeof path, origin->path);
        snprintf(out, size, "%s:%u: ", path, origin->line);
    }
}

const char *kp_option_name(int i)
{
    return i >= 0 && i < KP_OPTION_COUNT ? kp_specs[i].variable : "SO_KEEPALIVE";
}

const char *kp_option_alias(int i)
{
    return i >= 0 && i < KP_OPTION_COUNT ? kp_specs[i].alias : NULL;
}

void kp_config_defaults(struct kp_config *config)
{
    config->enabled = true;
    config->force = false;
    config->debug = false;
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        config->value[i] = kp_specs[i].fallback;
}

bool kp_config_set(struct kp_config *config, const char *name, const char *value,
                   const struct kp_origin *origin, bool warn)
{
    char where[256];
    char shown[68];
    if (strcmp(name, "KEEPALIVE") == 0) {
        enum kp_mode mode;
        if (kp_parse_mode(value, &mode)) {
            config->enabled = mode != KP_MODE_OFF;
            config->force = mode == KP_MODE_FORCE;
        } else if (warn) {
            kp_where(where, sizeof where, origin);
            kp_printable(shown, sizeof shown, value);
            kp_log("%signoring KEEPALIVE='%s': expected 'on', 'off' or 'force'; keepalive stays %s",
                   where, shown, !config->enabled ? "off" : config->force ? "forced" : "on");
        }
        return true;
    }
    if (strcmp(name, "LIBKEEPALIVE_DEBUG") == 0) {
        config->debug = true;
        return true;
    }
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        const struct kp_spec *s = &kp_specs[i];
        if (strcmp(name, s->variable) != 0 && (s->alias == NULL || strcmp(name, s->alias) != 0))
            continue;
        if (kp_parse_int(value, s->min, s->max, s->special, &config->value[i]) || !warn)
            return true;
        kp_where(where, sizeof where, origin);
        kp_printable(shown, sizeof shown, value);
        const char *specials = s->special == KP_DERIVE ? "-1 (derive), 0 (system default)"
                                                       : "0 (system default)";
        kp_log("%signoring %s='%s': expected %s or a whole number in %ld..%ld; using %d", where,
               name, shown, specials, s->min, s->max, config->value[i]);
        return true;
    }
    return false;
}

void kp_config_apply(struct kp_config *config, kp_getter get, void *context, bool warn)
{
    static const char *const names[] = {"KEEPALIVE", "LIBKEEPALIVE_DEBUG"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const char *value = get(context, names[k]);
        if (value != NULL)
            kp_config_set(config, names[k], value, NULL, warn);
    }
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        const char *name = kp_specs[i].variable;
        const char *value = get(context, name);
        if (value == NULL && kp_specs[i].alias != NULL) {
            name = kp_specs[i].alias;
            value = get(context, name);
        }
        if (value != NULL)
            kp_config_set(config, name, value, NULL, warn);
    }
}

void kp_config_finish(struct kp_config *config)
{
    if (config->value[KP_USER_TIMEOUT] == KP_DERIVE)
        config->value[KP_USER_TIMEOUT] = kp_derive_user_timeout(config->value);
}

static const char *kp_environment(void *context, const char *name)
{
    (void)context;
    return secure_getenv(name);
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
