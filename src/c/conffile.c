/* conffile.c - the configuration file: checked before it is trusted, size
 * bounded, read once with plain system calls (open, fstat, read, close; no
 * stdio, no allocation), one NAME=VALUE line at a time. */
#include "keepalive.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#define KP_LINE_MAX 512 /* longer lines are warned about and skipped */

static bool kp_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* The basename of the running executable, from /proc/self/exe (any path
 * length the kernel gives: at most PATH_MAX), or AT_EXECFN's when that
 * cannot be read; looked up only when a KEEPALIVE_EXCLUDE line needs it,
 * once per file. */
static const char *kp_executable(struct kp_conffile_state *state)
{
    if (state->exe_known != 0)
        return state->exe_known == 1 ? state->exe : NULL;
    int saved_errno = errno;
    char target[PATH_MAX + 1];
    ssize_t n = readlink("/proc/self/exe", target, sizeof target);
    errno = saved_errno;
    const char *path = NULL;
    if (n > 0 && (size_t)n < sizeof target) {
        target[n] = '\0';
        path = target;
    } else {
        path = (const char *)getauxval(AT_EXECFN);
    }
    state->exe_known = -1;
    if (path != NULL) {
        const char *base = strrchr(path, '/');
        base = base != NULL ? base + 1 : path;
        size_t len = strlen(base);
        if (len > 0 && len < sizeof state->exe) {
            memcpy(state->exe, base, len + 1);
            state->exe_known = 1;
        }
    }
    return state->exe_known == 1 ? state->exe : NULL;
}

/* Whether `name` (NUL-terminated, may be NULL) equals the word [word, word+len). */
static bool kp_same(const char *name, const char *word, size_t len)
{
    return name != NULL && strlen(name) == len && memcmp(name, word, len) == 0;
}

/* Does the blank-separated list [list, list+len) name the program (argv[0]'s
 * basename) or its executable (/proc/self/exe's basename)? */
static bool kp_excludes(struct kp_conffile_state *state, const char *list, size_t len,
                        const char *program)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && kp_blank(list[i]))
            i++;
        size_t start = i;
        while (i < len && !kp_blank(list[i]))
            i++;
        if (i == start)
            break;
        if (kp_same(program, list + start, i - start) ||
            kp_same(kp_executable(state), list + start, i - start))
            return true;
    }
    return false;
}

/* A copy of [text, text+len) as a C string in out[size]; false if it does not
 * fit or holds a NUL byte (which would silently cut the value short). */
static bool kp_copy(char *out, size_t size, const char *text, size_t len)
{
    if (len >= size || memchr(text, '\0', len) != NULL)
        return false;
    memcpy(out, text, len);
    out[len] = '\0';
    return true;
}

/* One warning about the line at `origin`, the path escaped. */
static void kp_line_warn(const struct kp_origin *origin, bool warn, const char *what,
                         const char *name)
{
    if (!warn)
        return;
    char path[200];
    kp_escape(path, sizeof path, origin->path, strlen(origin->path));
    char shown[80];
    shown[0] = '\0';
    if (name != NULL)
        kp_escape(shown, sizeof shown, name, strlen(name));
    kp_warn("%s:%u: %s%s%s; line skipped", path, origin->line, what, name != NULL ? " " : "",
            shown);
}

void kp_conffile_line(struct kp_config *config, struct kp_conffile_state *state,
                      const char *line, size_t len, const struct kp_origin *origin,
                      const char *program, bool warn)
{
    while (len > 0 && kp_blank(*line)) {
        line++;
        len--;
    }
    while (len > 0 && kp_blank(line[len - 1]))
        len--;
    if (len == 0 || line[0] == '#')
        return;
    const char *eq = memchr(line, '=', len);
    if (eq == NULL) {
        kp_line_warn(origin, warn, "expected NAME=VALUE", NULL);
        return;
    }
    size_t name_len = (size_t)(eq - line);
    while (name_len > 0 && kp_blank(line[name_len - 1]))
        name_len--;
    const char *text = eq + 1;
    size_t text_len = len - (size_t)(text - line);
    while (text_len > 0 && kp_blank(*text)) {
        text++;
        text_len--;
    }

    char name[32];
    if (name_len == 0) {
        kp_line_warn(origin, warn, "expected NAME=VALUE", NULL);
        return;
    }
    if (!kp_copy(name, sizeof name, line, name_len)) {
        char shown[80];
        kp_escape(shown, sizeof shown, line, name_len);
        kp_line_warn(origin, warn, "unknown name", shown);
        return;
    }
    if (strcmp(name, "KEEPALIVE_EXCLUDE") == 0) {
        if (memchr(text, '\0', text_len) != NULL)
            kp_line_warn(origin, warn, "a NUL byte in KEEPALIVE_EXCLUDE", NULL);
        else if (kp_excludes(state, text, text_len, program))
            state->excluded = true;
        return;
    }
    if (strcmp(name, "KEEPALIVE_CONFIG") == 0) {
        kp_line_warn(origin, warn, "KEEPALIVE_CONFIG is read from the environment only", NULL);
        return;
    }
    if (!kp_config_knows(name)) {
        kp_line_warn(origin, warn, "unknown name", name);
        return;
    }
    char value[64];
    if (!kp_copy(value, sizeof value, text, text_len)) {
        kp_line_warn(origin, warn, "the value is too long or holds a NUL byte for", name);
        return;
    }
    /* The TCP_* name wins over its alias, whichever line comes first. */
    for (int i = 0; i < KP_OPTION_COUNT; i++) {
        const char *alias = kp_option_alias(i);
        if (alias != NULL && strcmp(name, alias) == 0 && state->named[i])
            return;
        if (strcmp(name, kp_option_name(i)) == 0)
            state->named[i] = true;
    }
    kp_config_set(config, name, value, origin, warn);
}

/* Whether the open file may be trusted; warns (once) about why not. */
static bool kp_trusted(int fd, const char *path, unsigned owner, bool warn)
{
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0)
        why = "cannot stat it";
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (st.st_uid != 0 && st.st_uid != owner)
        why = owner == 0 ? "not owned by root" : "not owned by root or by you";
    else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        why = "writable by group or others";
    else if (st.st_size > KP_CONFFILE_MAX)
        why = "larger than 65536 bytes";
    if (why != NULL && warn) {
        char shown[200];
        kp_escape(shown, sizeof shown, path, strlen(path));
        kp_warn("ignoring the configuration file %s: %s", shown, why);
    }
    return why == NULL;
}

void kp_conffile_read(struct kp_config *config, const char *path, unsigned owner, bool missing_ok,
                      const char *program, bool warn)
{
    int saved_errno = errno;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        /* The default file: absent or unreadable for this user is silence. */
        bool quiet = missing_ok && (errno == ENOENT || errno == ENOTDIR || errno == EACCES);
        if (warn && !quiet) {
            char shown[200];
            kp_escape(shown, sizeof shown, path, strlen(path));
            kp_warn("cannot read the configuration file %s: %m", shown);
        }
        errno = saved_errno;
        return;
    }
    if (!kp_trusted(fd, path, owner, warn)) {
        close(fd);
        errno = saved_errno;
        return;
    }

    struct kp_conffile_state state;
    memset(&state, 0, sizeof state);
    struct kp_origin origin = {path, 1};
    char chunk[1024];
    char line[KP_LINE_MAX];
    size_t used = 0;
    bool overlong = false;
    size_t total = 0;
    for (int reads = 0; reads < KP_CONFFILE_MAX / (int)sizeof chunk + 2; reads++) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            kp_line_warn(&origin, warn, "cannot read the configuration file here", NULL);
        if (n <= 0)
            break;
        total += (size_t)n;
        if (total > KP_CONFFILE_MAX) {
            kp_line_warn(&origin, warn, "the file grew past 65536 bytes: the rest is ignored",
                         NULL);
            break;
        }
        for (ssize_t k = 0; k < n; k++) {
            char c = chunk[k];
            if (c != '\n') {
                if (used < sizeof line)
                    line[used++] = c;
                else
                    overlong = true;
                continue;
            }
            if (overlong)
                kp_line_warn(&origin, warn, "line longer than 512 bytes", NULL);
            else
                kp_conffile_line(config, &state, line, used, &origin, program, warn);
            origin.line++;
            used = 0;
            overlong = false;
        }
    }
    if (overlong)
        kp_line_warn(&origin, warn, "line longer than 512 bytes", NULL);
    else if (used > 0)
        kp_conffile_line(config, &state, line, used, &origin, program, warn);
    close(fd);
    if (state.excluded)
        config->enabled = false; /* KEEPALIVE_EXCLUDE wins over the file's KEEPALIVE */
    errno = saved_errno;
}
