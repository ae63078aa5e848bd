/* keepalive.h - the core shared by the three preload libraries (internal). */
#ifndef KP_KEEPALIVE_H
#define KP_KEEPALIVE_H

#include <stdbool.h>
#include <sys/socket.h>

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
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, rule, \
                  live, bpf_at, bpf_since, help)                                              \
    KP_##id,
#include "options.def"
#undef KP_OPTION
    KP_OPTION_COUNT
};

/* options.def's rule column: whether the precedence rule covers an option
 * (the program's own choice wins with KEEPALIVE=on, ours with KEEPALIVE=force).
 * The live and bpf_* columns are for the command line; C leaves them alone. */
#define KP_RULED true
#define KP_UNRULED false

/* The configuration, read once from the configuration file and the
 * environment. A value of 0 means "leave the system default";
 * TCP_USER_TIMEOUT is already derived. */
struct kp_config {
    bool enabled; /* KEEPALIVE is not off and the program is not excluded */
    bool force;   /* KEEPALIVE=force: our values win over the program's */
    bool debug;
    int value[KP_OPTION_COUNT];
};

/* One source of NAME=VALUE settings: returns the value of `name`, or NULL. */
typedef const char *(*kp_getter)(void *context, const char *name);

/* Where a value came from, for warnings: "the environment" or a file. */
struct kp_origin {
    const char *path; /* NULL: the environment */
    unsigned line;
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

/* The built-in defaults (TCP_USER_TIMEOUT still KP_DERIVE). */
void kp_config_defaults(struct kp_config *config);

/* Apply one NAME=VALUE setting over `config` (KEEPALIVE, LIBKEEPALIVE_DEBUG,
 * an option's variable or alias). Returns false for a name that is not one
 * of these. An invalid value is warned about (when `warn`) and ignored. */
bool kp_config_set(struct kp_config *config, const char *name, const char *value,
                   const struct kp_origin *origin, bool warn);

/* Apply the settings of one getter-like source over `config`, each name
 * looked up once (the TCP_* name wins over its alias). */
void kp_config_apply(struct kp_config *config, kp_getter get, void *context, bool warn);

/* Derive TCP_USER_TIMEOUT when it is still KP_DERIVE. */
void kp_config_finish(struct kp_config *config);

/* The next definition of the function `name`: dlsym(RTLD_NEXT, name), or,
 * in a process without dlsym (glibc < 2.34 without libdl loaded), the
 * system call itself. NULL if there is none; may change errno. */
void *kp_next_symbol(const char *name);

/*
 * The configuration file (conffile.c). kp_conffile_read() opens `path`,
 * checks that it may be trusted (a regular file, owned by root or by
 * `owner`, not writable by group or others, at most KP_CONFFILE_MAX bytes),
 * and applies its lines over `config`; `program` (argv[0]'s basename) and
 * /proc/self/exe's basename are the names KEEPALIVE_EXCLUDE is matched
 * against. `missing_ok`: an absent file is silently nothing. Plain system
 * calls only: no stdio, no allocation.
 */
#define KP_CONFFILE_MAX 65536
#define KP_CONFFILE_DEFAULT "/etc/keepalive-preload.conf"
void kp_conffile_read(struct kp_config *config, const char *path, unsigned owner, bool missing_ok,
                      const char *program, bool warn);

/* Apply one line of a configuration file (without its newline; `len`
 * bytes, need not be NUL-terminated) over `config`. `state` tracks the
 * TCP_*-over-alias rule and KEEPALIVE_EXCLUDE across the lines of one file
 * (zero it first).
 * Exposed for the fuzz target. */
struct kp_conffile_state {
    bool named[KP_OPTION_COUNT]; /* set by its TCP_* name in this file */
    bool excluded;               /* KEEPALIVE_EXCLUDE named this program */
    int exe_known;               /* 0: not looked up, 1: in exe, -1: unknown */
    char exe[256];               /* basename of /proc/self/exe, looked up lazily */
};
void kp_conffile_line(struct kp_config *config, struct kp_conffile_state *state,
                      const char *line, size_t len, const struct kp_origin *origin,
                      const char *program, bool warn);

/* The real functions (real.c): a small typed table, each entry resolved
 * once with kp_next_symbol(); errno is left untouched. If a function cannot
 * be found: NULL, with errno ENOSYS. */
enum kp_real_id {
    KP_REAL_INTERPOSED, /* kp_variant.symbol: connect, listen or socket */
    KP_REAL_SETSOCKOPT,
    KP_REAL_COUNT
};
void *kp_real_symbol(enum kp_real_id id);

/* The next definition of kp_variant.symbol: kp_real_symbol(KP_REAL_INTERPOSED). */
void *kp_real(void);

/* The real setsockopt(2); -1 with ENOSYS if there is none. The library's
 * own calls go through it, never through the interposed one. */
typedef int (*kp_setsockopt_fn)(int, int, int, const void *, socklen_t);
int kp_setsockopt(int fd, int level, int optname, const void *value, socklen_t len);

/* The option of options.def that (level, optname) sets and that the
 * precedence rule covers (options.def: KP_RULED), KP_OPTION_COUNT for SO_KEEPALIVE, or
 * -1 for any other option. */
int kp_ruled_option(int level, int optname);

/* Whether fd is a TCP socket: one getsockopt(SO_PROTOCOL); errno preserved. */
bool kp_is_tcp(int fd);

/* The variable of option `i` (KP_OPTION_COUNT: "SO_KEEPALIVE"), which is
 * also the name of the socket option it sets; its 0.3 alias, or NULL. */
const char *kp_option_name(int i);
const char *kp_option_alias(int i);

/*
 * Apply the configuration to `fd`. `fresh` says the socket is TCP and was
 * just made by socket(2), so the program has chosen nothing on it yet.
 * Otherwise, with KEEPALIVE=on, one getsockopt(SO_KEEPALIVE) tells whether
 * the program turned keepalive on itself (then its keepalive options are
 * kept), and the first TCP-level setsockopt doubles as the TCP test: nothing
 * more is done if it fails with an error that says "not a TCP socket"
 * (ENOPROTOOPT, EOPNOTSUPP) or "not a socket" (EBADF, ENOTSOCK). errno is
 * preserved.
 */
void kp_apply(int fd, bool fresh);

/* Write one "<library>: <message>" line on stderr with write(2); errno is
 * preserved. */
void kp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
