/*
 * parse_fuzz - libFuzzer target for the configuration parser.
 *
 * Input: byte 0 picks an option of options.def; the rest is the value text.
 * Checks kp_parse_int and kp_parse_mode against an independent oracle written from the
 * contract (an optional '-' and decimal digits, nothing else; 0, the special
 * value, or min..max), and that kp_config_read, fed a whole environment made
 * from the input, only ever yields values the contract allows. Any mismatch
 * aborts. Built with -DKEEPALIVE_FUZZ=ON (clang).
 */
#include "keepalive.h"
#include "oracle.h"
#include "parse.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const struct kp_variant kp_variant = {"parse_fuzz", "connect", KP_ON_ALL};

struct spec {
    const char *variable;
    const char *alias;
    long min, max, special;
};

static const struct spec specs[KP_OPTION_COUNT] = {
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, rule, \
                  live, bpf_at, bpf_since, help)                                              \
    [KP_##id] = {variable, alias, min, max, special},
#include "options.def"
#undef KP_OPTION
};

static char *fuzz_env[2 * KP_OPTION_COUNT + 2][2];
static size_t fuzz_env_count;

static const char *fuzz_get(void *context, const char *name)
{
    (void)context;
    for (size_t i = 0; i < fuzz_env_count; i++)
        if (strcmp(fuzz_env[i][0], name) == 0)
            return fuzz_env[i][1];
    return NULL;
}

static void check_config(const struct kp_config *c)
{
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        int v = c->value[i];
        if (v != 0 && (v < specs[i].min || v > specs[i].max))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    int i = data[0] % KP_OPTION_COUNT;
    long special = specs[i].special;
    int parsed = 12345;
    long expected = 0;
    int ok = kp_parse_int(text, specs[i].min, specs[i].max, special, &parsed);
    int want = oracle_number(text, specs[i].min, specs[i].max, special, &expected);
    if (ok != want || (ok && parsed != expected) || (!ok && parsed != 12345))
        abort();

    enum kp_mode mode = (enum kp_mode)42;
    bool valid = kp_parse_mode(text, &mode);
    bool want_valid = *text == '\0' || strcasecmp(text, "on") == 0 ||
                      strcasecmp(text, "off") == 0 || strcasecmp(text, "force") == 0;
    if (valid != want_valid || (!valid && mode != (enum kp_mode)42))
        abort();
    bool off = valid && mode == KP_MODE_OFF;
    bool force = valid && mode == KP_MODE_FORCE;

    /* A whole environment: the value under every name, NUL-separated pieces
     * of the input under the next names. */
    fuzz_env_count = 0;
    char *piece = text;
    for (int k = 0; k < KP_OPTION_COUNT; k++) {
        fuzz_env[fuzz_env_count][0] = (char *)specs[k].variable;
        fuzz_env[fuzz_env_count++][1] = piece;
        if (specs[k].alias != NULL) {
            fuzz_env[fuzz_env_count][0] = (char *)specs[k].alias;
            fuzz_env[fuzz_env_count++][1] = text;
        }
        size_t len = strlen(piece);
        if (piece + len < text + size - 1)
            piece += len + 1;
    }
    fuzz_env[fuzz_env_count][0] = "KEEPALIVE";
    fuzz_env[fuzz_env_count++][1] = text;
    struct kp_config config;
    kp_config_defaults(&config);
    kp_config_apply(&config, fuzz_get, NULL, false);
    kp_config_finish(&config);
    check_config(&config);
    if (config.enabled == off || config.force != force)
        abort();
    free(text);
    return 0;
}
