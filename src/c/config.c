/* config.c - the configuration, read from the environment once at load. */
#include "keepalive.h"
#include "parse.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

struct kp_spec {
    const char *variable;
    const char *alias;
    long min;
    long max;
    long special;
    int fallback;
};

static const struct kp_spec kp_specs[KP_OPTION_COUNT] = {
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, help) \
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

void kp_config_read(struct kp_config *config, char *(*get)(const char *), bool warn)
{
    config->enabled = true;
    config->debug = false;
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        config->value[i] = kp_specs[i].fallback;

    if (get != NULL) {
        bool valid;
        const char *off = get("KEEPALIVE");
        config->enabled = !kp_parse_off(off, &valid);
        if (!valid && warn) {
            char shown[68];
            kp_printable(shown, sizeof shown, off);
            kp_log("ignoring KEEPALIVE='%s': expected 'on' or 'off'; keepalive stays on", shown);
        }
        config->debug = get("LIBKEEPALIVE_DEBUG") != NULL;

        for (int i = 0; i < KP_OPTION_COUNT; i++) {
            const struct kp_spec *s = &kp_specs[i];
            const char *name = s->variable;
            const char *text = get(name);
            if (text == NULL && s->alias != NULL) {
                name = s->alias;
                text = get(name);
            }
            if (text == NULL)
                continue;
            if (kp_parse_int(text, s->min, s->max, s->special, &config->value[i]) || !warn)
                continue;
            char shown[68];
            kp_printable(shown, sizeof shown, text);
            const char *specials = s->special == KP_DERIVE ? "-1 (derive), 0 (system default)"
                                                           : "0 (system default)";
            kp_log("ignoring %s='%s': expected %s or a whole number in %ld..%ld; using %d", name,
                   shown, specials, s->min, s->max, s->fallback);
        }
    }
    if (config->value[KP_USER_TIMEOUT] == KP_DERIVE)
        config->value[KP_USER_TIMEOUT] = kp_derive_user_timeout(config->value);
}

/* Secure-execution mode (setuid, setgid, file capabilities): the environment
 * is not to be trusted, so it is not read at all and nothing is printed. */
static char *(*kp_environment(void))(const char *)
{
    return getauxval(AT_SECURE) ? NULL : secure_getenv;
}

/*
 * Read once, without locks: the first caller (normally the constructor)
 * fills the shared copy and prints the warnings. A call that races with it
 * (another thread, before the constructor finished) reads the environment
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
        kp_config_read(&kp_shared, kp_environment(), true);
        atomic_store_explicit(&kp_state, 2, memory_order_release);
        return &kp_shared;
    }
    if (expected == 2)
        return &kp_shared;
    kp_config_read(scratch, kp_environment(), false);
    return scratch;
}

__attribute__((constructor)) static void kp_load(void)
{
    struct kp_config scratch;
    (void)kp_config(&scratch);
    (void)kp_real();
}
