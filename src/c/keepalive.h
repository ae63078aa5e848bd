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
 * (KEEPALIVE=on: each option the program sets itself keeps the program's
 * value; KEEPALIVE=force: ours wins). The bpf_* columns are for the command
 * line; C leaves them alone. */
#define KP_RULED true
#define KP_UNRULED false

/* options.def's live column: the socket states on which an option means
 * something. An option that is not live on a connected socket (TCP_SYNCNT,
 * TCP_MAXSEG) must be set before connect(2) to matter. */
enum kp_live_state {
    KP_LIVE_LISTEN = 1u << 0,
    KP_LIVE_CONNECTING = 1u << 1,
    KP_LIVE_CONNECTED = 1u << 2,
};
#define KP_LIVE(state) KP_LIVE_##state

/* The table, expanded once (options.c). `name` is the variable, which is
 * also the name of the socket option it sets. */
struct kp_option_spec {
    const char *variable;
    const char *alias; /* libkeepalive 0.3 spelling, or NULL */
    long min;
    long max;
    long special;
    int fallback;  /* the built-in default */
    int optname;   /* the IPPROTO_TCP option */
    unsigned where; /* KP_ON(...) */
    unsigned live;  /* KP_LIVE(...) */
    bool ruled;
};
extern const struct kp_option_spec kp_options[KP_OPTION_COUNT];

/* The variable of option `i` (KP_OPTION_COUNT: "SO_KEEPALIVE"), which is
 * also the name of the socket option it sets; its 0.3 alias, or NULL. */
const char *kp_option_name(int i);
const char *kp_option_alias(int i);

/* The option of options.def that (level, optname) sets and that the
 * precedence rule covers (KP_RULED), KP_OPTION_COUNT for SO_KEEPALIVE, or
 * -1 for any other option. */
int kp_ruled_option(int level, int optname);

/* The derived TCP_USER_TIMEOUT for these timers (s, s, probes):
 * (idle + intvl * cnt) * 1000 ms, saturated at INT_MAX; 0 when one is 0. */
int kp_derive(int idle, int intvl, int cnt);

/* The configuration, read once from the configuration file and the
 * environment. A value of 0 means "leave the system default";
 * TCP_USER_TIMEOUT is already derived from our timers. */
struct kp_config {
    bool enabled; /* KEEPALIVE is not off and the program is not excluded */
    bool force;   /* KEEPALIVE=force: our values win over the program's */
    bool debug;
    bool derive;  /* TCP_USER_TIMEOUT follows the socket's timers (-1) */
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

/* The configuration (config.c); read on first use (normally from the
 * constructor). `scratch` is used only by a call that races with the first. */
const struct kp_config *kp_config(struct kp_config *scratch);

/*
 * Settings (setting.c): the built-in defaults, one NAME=VALUE over a
 * configuration, a whole source (the environment), and the last step.
 */
void kp_config_defaults(struct kp_config *config);

/* Whether `name` is one kp_config_set takes. */
bool kp_config_knows(const char *name);

/* Apply one NAME=VALUE setting over `config` (KEEPALIVE, LIBKEEPALIVE_DEBUG,
 * an option's variable or alias). Returns false for a name that is not one
 * of these. An invalid value is warned about (when `warn`) and ignored. */
bool kp_config_set(struct kp_config *config, const char *name, const char *value,
                   const struct kp_origin *origin, bool warn);

/* Apply the settings of one getter-like source over `config`, each name
 * looked up once (the TCP_* name wins over its alias). */
void kp_config_apply(struct kp_config *config, kp_getter get, void *context, bool warn);

/* Derive TCP_USER_TIMEOUT when it is still KP_DERIVE (and say so in
 * config->derive when the three timers are all set). */
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
#define KP_NAME_MAX 255 /* a file name's longest basename (NAME_MAX) */
struct kp_conffile_state {
    bool named[KP_OPTION_COUNT]; /* set by its TCP_* name in this file */
    bool excluded;               /* KEEPALIVE_EXCLUDE named this program */
    int exe_known;               /* 0: not looked up, 1: in exe, -1: unknown */
    char exe[KP_NAME_MAX + 1];   /* basename of /proc/self/exe, looked up lazily */
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

/* A fresh TCP socket made with the system call itself (never through an
 * interposed socket()); -1 on failure. */
int kp_raw_tcp_socket(void);

/* IPPROTO_MPTCP (Linux 5.6), spelt out for older C libraries' headers. */
#define KP_IPPROTO_MPTCP 262

/* Whether fd is a TCP (or MPTCP) socket: one getsockopt(SO_PROTOCOL);
 * errno preserved. */
bool kp_is_tcp(int fd);

/*
 * The precedence rule's per-process state (rule.c), no per-socket tables:
 * whether the program has ever set one of the ruled options itself (the
 * setsockopt interposer raises the flag), and what a fresh TCP socket of
 * this process has (read once, when first needed): before the interposed
 * call, a value equal to it counts as "not set by the program".
 */
void kp_program_sets_options(void);
bool kp_program_set_options(void);
void kp_fresh_values(int *out); /* out[KP_OPTION_COUNT] */

/*
 * Apply the configuration to `fd` (apply.c), at the interposed call:
 *   KP_FRESH     just made by socket(2) with TCP (or MPTCP) arguments;
 *   KP_LISTENING before listen(2), KP_CONNECTED after connect(2) accepted an
 *                AF_INET/AF_INET6 address: one getsockopt(SO_PROTOCOL) says
 *                whether it is TCP or MPTCP; nothing more is done otherwise;
 *   KP_EARLY     before connect(2): only the options that matter before the
 *                connection exists (options.def live column without
 *                CONNECTED: TCP_SYNCNT, TCP_MAXSEG), when configured.
 * KEEPALIVE=on: each ruled option the program already set (a value other
 * than a fresh socket's and ours; read only if the program ever set one
 * itself) is kept; the others get ours; a derived TCP_USER_TIMEOUT is
 * computed from the timers the socket ends up with. An option the kernel
 * refuses on MPTCP is skipped quietly. errno is preserved.
 */
enum kp_when { KP_FRESH, KP_LISTENING, KP_CONNECTED, KP_EARLY };
void kp_apply(int fd, enum kp_when when);

/* Whether the configuration sets an option that matters only before
 * connect(2) in this variant (TCP_SYNCNT, TCP_MAXSEG when configured). */
bool kp_has_early(const struct kp_config *config);

/*
 * Output (log.c), one line "<library>: <message>" on stderr with write(2),
 * errno preserved, and only when fd 2 is open and not a socket (debug
 * output never goes into a program's connection or a closed fd).
 * kp_warn: a warning, at most KP_WARN_MAX per process; kp_warn_summary
 * then says how many more there were.
 */
#define KP_WARN_MAX 8
void kp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kp_warn_summary(void);

/* `len` bytes of `text` fit for one line of a message, NUL-terminated in
 * out[size]: control bytes and bytes outside ASCII as \xNN; a long text is
 * cut with "...". */
void kp_escape(char *out, size_t size, const char *text, size_t len);

#endif
