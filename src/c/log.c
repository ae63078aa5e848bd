/* log.c - one line on stderr: formatted into a stack buffer and written with
 * write(2), never through a FILE stream (no locks, no allocation); only to
 * an fd 2 that is open and not a socket; warnings bounded per process. */
#include "keepalive.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* fd 2 may be closed, or be a socket the program got from socket(2) after
 * closing stderr: then a byte from us would land inside its protocol. */
static bool kp_stderr_usable(void)
{
    struct stat st;
    return fstat(STDERR_FILENO, &st) == 0 && !S_ISSOCK(st.st_mode);
}

static void kp_vlog(const char *fmt, va_list ap)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s: ", kp_variant.library);
    if (n < 0)
        n = 0;
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void kp_log(const char *fmt, ...)
{
    int saved_errno = errno;
    if (kp_stderr_usable()) {
        va_list ap;
        va_start(ap, fmt);
        kp_vlog(fmt, ap);
        va_end(ap);
    }
    errno = saved_errno;
}

static atomic_uint kp_warnings;

void kp_warn(const char *fmt, ...)
{
    int saved_errno = errno;
    if (atomic_fetch_add(&kp_warnings, 1) < KP_WARN_MAX && kp_stderr_usable()) {
        va_list ap;
        va_start(ap, fmt);
        kp_vlog(fmt, ap);
        va_end(ap);
    }
    errno = saved_errno;
}

void kp_warn_summary(void)
{
    unsigned n = atomic_load(&kp_warnings);
    if (n > KP_WARN_MAX)
        kp_log("%u more warnings not shown", n - KP_WARN_MAX);
}

void kp_escape(char *out, size_t size, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    size_t i = 0;
    for (; i < len && n + 8 < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7f) {
            out[n++] = (char)c;
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (i < len) {
        out[n++] = '.';
        out[n++] = '.';
        out[n++] = '.';
    }
    out[n] = '\0';
}
