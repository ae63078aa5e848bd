/*
 * conf_fuzz - libFuzzer target for the configuration file's line parser.
 *
 * Input: the text of a configuration file. Each line goes through
 * kp_conffile_line (as kp_conffile_read feeds it); an independent oracle,
 * written from the contract, computes what the file must configure:
 *   - blanks (space, tab, CR) around a line, a name and a value are ignored;
 *     an empty line or one starting with '#' is a comment;
 *   - a line is NAME=VALUE (the first '='); anything else is skipped;
 *   - names: KEEPALIVE (on/off/force/empty, any case), LIBKEEPALIVE_DEBUG (on
 *     unless empty or "0"),
 *     the options' TCP_* names and their 0.3 aliases, KEEPALIVE_EXCLUDE (a
 *     blank-separated list of program names); KEEPALIVE_CONFIG and unknown
 *     names are skipped; the TCP_* name wins over its alias in one file;
 *   - numbers as in the environment: '-'? digits; 0, the special value or
 *     min..max; an invalid value keeps the previous one;
 *   - a value over 63 bytes, a name over 31, or a NUL byte: the line is skipped;
 *   - KEEPALIVE_EXCLUDE naming the program wins over the file's KEEPALIVE.
 * Any difference aborts. Built with -DKEEPALIVE_FUZZ=ON (clang).
 */
#include "keepalive.h"
#include "oracle.h"
#include "parse.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const struct kp_variant kp_variant = {"conf_fuzz", "connect", KP_ON_ALL};

#define PROGRAM "fuzzprog"

struct spec {
    const char *variable;
    const char *alias;
    long min, max, special, fallback;
};

static const struct spec specs[KP_OPTION_COUNT] = {
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, rule, \
                  live, bpf_at, bpf_since, help)                                              \
    [KP_##id] = {variable, alias, min, max, special, dflt},
#include "options.def"
#undef KP_OPTION
};

struct model {
    int value[KP_OPTION_COUNT];
    int named[KP_OPTION_COUNT];
    int enabled, force, debug, excluded;
};

static char exe[256];

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* The oracle for one line, [s, s+n) without its newline. */
static void model_line(struct model *m, const char *s, size_t n)
{
    while (n && blank(*s))
        s++, n--;
    while (n && blank(s[n - 1]))
        n--;
    if (n == 0 || *s == '#')
        return;
    const char *eq = memchr(s, '=', n);
    if (eq == NULL)
        return;
    size_t nl = (size_t)(eq - s);
    while (nl && blank(s[nl - 1]))
        nl--;
    const char *v = eq + 1;
    size_t vl = n - (size_t)(v - s);
    while (vl && blank(*v))
        v++, vl--;
    if (nl == 0 || nl >= 32 || memchr(s, '\0', nl))
        return;
    char name[32];
    memcpy(name, s, nl);
    name[nl] = '\0';
    if (strcmp(name, "KEEPALIVE_EXCLUDE") == 0) {
        if (memchr(v, '\0', vl))
            return;
        for (size_t i = 0; i < vl;) {
            while (i < vl && blank(v[i]))
                i++;
            size_t start = i;
            while (i < vl && !blank(v[i]))
                i++;
            size_t len = i - start;
            if ((len == strlen(PROGRAM) && memcmp(v + start, PROGRAM, len) == 0) ||
                (len > 0 && len == strlen(exe) && memcmp(v + start, exe, len) == 0))
                m->excluded = 1;
        }
        return;
    }
    if (vl >= 64 || memchr(v, '\0', vl))
        return;
    char value[64];
    memcpy(value, v, vl);
    value[vl] = '\0';
    if (strcmp(name, "KEEPALIVE") == 0) {
        if (vl == 0 || strcasecmp(value, "on") == 0)
            m->enabled = 1, m->force = 0;
        else if (strcasecmp(value, "off") == 0)
            m->enabled = 0, m->force = 0;
        else if (strcasecmp(value, "force") == 0)
            m->enabled = 1, m->force = 1;
        return;
    }
    if (strcmp(name, "LIBKEEPALIVE_DEBUG") == 0) {
        m->debug = vl != 0 && strcmp(value, "0") != 0; /* empty and "0": off */
        return;
    }
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        const struct spec *sp = &specs[i];
        if (strcmp(name, sp->variable) == 0) {
            m->named[i] = 1;
        } else if (sp->alias == NULL || strcmp(name, sp->alias) != 0 || m->named[i]) {
            continue;
        }
        long parsed;
        if (oracle_number(value, sp->min, sp->max, sp->special, &parsed))
            m->value[i] = (int)parsed;
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (exe[0] == '\0') {
        char target[sizeof exe];
        ssize_t n = readlink("/proc/self/exe", target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            const char *base = strrchr(target, '/');
            strcpy(exe, base ? base + 1 : target);
        }
    }
    struct kp_config config;
    kp_config_defaults(&config);
    struct kp_conffile_state state;
    memset(&state, 0, sizeof state);
    struct model m = {.enabled = 1};
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        m.value[i] = (int)specs[i].fallback;

    struct kp_origin origin = {"fuzz.conf", 1};
    const char *text = (const char *)data;
    size_t start = 0;
    for (size_t k = 0; k <= size; k++) {
        if (k < size && text[k] != '\n')
            continue;
        if (k - start < 512) { /* longer lines are the reader's to skip */
            kp_conffile_line(&config, &state, text + start, k - start, &origin, PROGRAM, false);
            model_line(&m, text + start, k - start);
        }
        origin.line++;
        start = k + 1;
    }
    if (state.excluded)
        config.enabled = false;
    if (m.excluded)
        m.enabled = 0;

    if (config.enabled != (m.enabled != 0) || config.force != (m.force != 0) ||
        config.debug != (m.debug != 0) || state.excluded != (m.excluded != 0))
        abort();
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        if (config.value[i] != m.value[i])
            abort();
    kp_config_finish(&config);
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        int v = config.value[i];
        if (v != 0 && (v < specs[i].min || v > specs[i].max))
            abort();
    }
    return 0;
}
