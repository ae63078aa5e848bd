/* keepalive.h - the core shared by the three preload libraries (internal). */
#ifndef KP_KEEPALIVE_H
#define KP_KEEPALIVE_H

#include <stdbool.h>

/* The variants (variants.def); options say in which ones they apply. */
enum kp_variant_index {
#define KP_VARIANT(symbol, library, word, help) KP_VARIANT_##symbol,
#include "variants.def"
#undef KP_VARIANT
    KP_VARIANT_COUNT
};
#define KP_ON(symbol) (1u << KP_VARIANT_##symbol)
#define KP_ON_ALL ((1u << KP_VARIANT_COUNT) - 1u)

/* TCP_USER_TIMEOUT's special value: derive it from the keepalive timers. */
#define KP_DERIVE (-1)

enum kp_option {
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, help) \
    KP_##id,
#include "options.def"
#undef KP_OPTION
    KP_OPTION_COUNT
};

/* The configuration, read from the environment once. A value of 0 means
 * "leave the system default"; TCP_USER_TIMEOUT is already derived. */
struct kp_config {
    bool enabled;
    bool debug;
    int value[KP_OPTION_COUNT];
};

/* Which library this is: variant.c, compiled into each library with the
 * row of variants.def that CMake passes as KP_SYMBOL and KP_LIBRARY. */
struct kp_variant {
    const char *library; /* "libkeepalive", for messages */
    const char *symbol;  /* the interposed function */
    unsigned where;      /* KP_ON(symbol) */
};
extern const struct kp_variant kp_variant;

/* The configuration; read on first use (normally from the constructor).
 * `scratch` is used only by a call that races with the first one. */
const struct kp_config *kp_config(struct kp_config *scratch);

/* Fill `config` from the environment `get` (getenv-like); warn on stderr
 * about invalid values when `warn` is set. Exposed for the fuzz target. */
void kp_config_read(struct kp_config *config, char *(*get)(const char *), bool warn);

/* The next definition of the function `name`: dlsym(RTLD_NEXT, name), or,
 * in a process without dlsym (glibc < 2.34 without libdl loaded), the
 * system call itself. NULL if there is none; may change errno. */
void *kp_next_symbol(const char *name);

/* The next definition of kp_variant.symbol (kp_next_symbol), resolved once;
 * errno is left untouched. If there is none: NULL, with errno ENOSYS. */
void *kp_real(void);

/*
 * Apply the configuration to `fd`. `known_tcp` says the caller already knows
 * fd is a TCP socket; otherwise the first TCP-level setsockopt doubles as
 * the test, and nothing more is done if it fails with an error that says
 * "not a TCP socket" (ENOPROTOOPT, EOPNOTSUPP) or "not a socket" (EBADF,
 * ENOTSOCK). errno is preserved.
 */
void kp_apply(int fd, bool known_tcp);

/* Write one "<library>: <message>" line on stderr with write(2); errno is
 * preserved. */
void kp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
