/* keepalive.h - the core shared by the three preload libraries (internal). */
#ifndef KP_KEEPALIVE_H
#define KP_KEEPALIVE_H

#include <stdbool.h>

/* Which interposed call a library serves; options say where they apply. */
enum {
    KP_ON_CONNECT = 1u << 0,
    KP_ON_LISTEN = 1u << 1,
    KP_ON_SOCKET = 1u << 2,
    KP_ON_ALL = KP_ON_CONNECT | KP_ON_LISTEN | KP_ON_SOCKET,
};

enum kp_option {
#define KP_OPTION(id, variable, alias, min, max, dflt, optname, where) KP_##id,
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

/* Defined by each front-end (connect.c, listen.c, socket.c). */
struct kp_variant {
    const char *library; /* "libkeepalive", for messages */
    const char *symbol;  /* the interposed function */
    unsigned where;      /* KP_ON_* */
};
extern const struct kp_variant kp_variant;

/* The configuration; read on first use (normally from the constructor).
 * `scratch` is used only by a call that races with the first one. */
const struct kp_config *kp_config(struct kp_config *scratch);

/* Fill `config` from the environment `get` (getenv-like); warn on stderr
 * about invalid values when `warn` is set. Exposed for the fuzz target. */
void kp_config_read(struct kp_config *config, char *(*get)(const char *), bool warn);

/* The next definition of kp_variant.symbol (dlsym RTLD_NEXT), resolved once;
 * errno is left untouched. If there is none: NULL, with errno ENOSYS. */
void *kp_real(void);

/*
 * Apply the configuration to `fd`. `known_tcp` says the caller already knows
 * fd is a TCP socket; otherwise the first TCP-level setsockopt doubles as
 * the test and nothing more is done if it fails with ENOPROTOOPT or
 * EOPNOTSUPP. errno is preserved.
 */
void kp_apply(int fd, bool known_tcp);

/* Write one "<library>: <message>" line on stderr with write(2); errno is
 * preserved. */
void kp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
