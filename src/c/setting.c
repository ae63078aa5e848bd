/* setting.c - one NAME=VALUE setting over a configuration: the built-in
 * defaults, the option spec's ranges, the warnings about invalid values. */
#include "keepalive.h"
#include "parse.h"

#include <stdio.h>
#include <string.h>

void kp_config_defaults(struct kp_config *config)
{
    config->enabled = true;
    config->force = false;
    config->debug = false;
    config->derive = false;
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        config->value[i] = kp_options[i].fallback;
}

/* The option `name` names (its variable or alias), or -1. */
static int kp_option_named(const char *name)
{
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        const struct kp_option_spec *s = &kp_options[i];
        if (strcmp(name, s->variable) == 0 || (s->alias != NULL && strcmp(name, s->alias) == 0))
            return i;
    }
    return -1;
}

bool kp_config_knows(const char *name)
{
    return strcmp(name, "KEEPALIVE") == 0 || strcmp(name, "LIBKEEPALIVE_DEBUG") == 0 ||
           kp_option_named(name) >= 0;
}

/* "PATH:LINE: " for a value from a file, "" for the environment. */
static void kp_where(char *out, size_t size, const struct kp_origin *origin)
{
    out[0] = '\0';
    if (origin == NULL || origin->path == NULL)
        return;
    char path[200];
    kp_escape(path, sizeof path, origin->path, strlen(origin->path));
    snprintf(out, size, "%s:%u: ", path, origin->line);
}

bool kp_config_set(struct kp_config *config, const char *name, const char *value,
                   const struct kp_origin *origin, bool warn)
{
    char where[256];
    char shown[80];
    if (strcmp(name, "KEEPALIVE") == 0) {
        enum kp_mode mode;
        if (kp_parse_mode(value, &mode)) {
            config->enabled = mode != KP_MODE_OFF;
            config->force = mode == KP_MODE_FORCE;
        } else if (warn) {
            kp_where(where, sizeof where, origin);
            kp_escape(shown, sizeof shown, value, strlen(value));
            kp_warn("%signoring KEEPALIVE='%s': expected 'on', 'off' or 'force'; keepalive stays %s",
                    where, shown, !config->enabled ? "off" : config->force ? "forced" : "on");
        }
        return true;
    }
    if (strcmp(name, "LIBKEEPALIVE_DEBUG") == 0) {
        config->debug = value[0] != '\0' && strcmp(value, "0") != 0;
        return true;
    }
    int i = kp_option_named(name);
    if (i < 0)
        return false;
    const struct kp_option_spec *s = &kp_options[i];
    if (kp_parse_int(value, s->min, s->max, s->special, &config->value[i]) || !warn)
        return true;
    kp_where(where, sizeof where, origin);
    kp_escape(shown, sizeof shown, value, strlen(value));
    const char *specials =
        s->special == KP_DERIVE ? "-1 (derive), 0 (system default)" : "0 (system default)";
    kp_warn("%signoring %s='%s': expected %s or a whole number in %ld..%ld; using %d", where, name,
            shown, specials, s->min, s->max, config->value[i]);
    return true;
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
        const char *name = kp_options[i].variable;
        const char *value = get(context, name);
        if (value == NULL && kp_options[i].alias != NULL) {
            name = kp_options[i].alias;
            value = get(context, name);
        }
        if (value != NULL)
            kp_config_set(config, name, value, NULL, warn);
    }
}

void kp_config_finish(struct kp_config *config)
{
    if (config->value[KP_USER_TIMEOUT] != KP_DERIVE)
        return;
    int *v = config->value;
    v[KP_USER_TIMEOUT] = kp_derive(v[KP_KEEPIDLE], v[KP_KEEPINTVL], v[KP_KEEPCNT]);
    config->derive = v[KP_USER_TIMEOUT] != 0;
}
