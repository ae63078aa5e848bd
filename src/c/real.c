/* real.c - find the next definitions of the functions we interpose, once each. */
#include "keepalive.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * dlsym, referenced weakly and linked without -ldl, so that the library
 * needs libc alone: loading libdl costs every preloaded process about ten
 * system calls. glibc >= 2.34 and musl define dlsym in libc. Older glibc
 * defines it in libdl only, and then it resolves whenever libdl is in the
 * process (the program or any other preload library needs it); when it is
 * not, nothing else in the process can interpose the call either, so the
 * system call itself is the next definition (kp_syscall below).
 * KEEPALIVE_TEST_NO_DLSYM (CMake, tests only) builds as if dlsym were absent.
 */
#ifdef KP_TEST_NO_DLSYM
#define kp_dlsym ((void *(*)(void *, const char *))NULL)
#else
extern void *dlsym(void *restrict handle, const char *restrict name) __attribute__((weak));
#define kp_dlsym dlsym
#endif

/* The interposable calls as plain system calls: what the next definition
 * is when there is no dlsym. */
static int kp_sys_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    return (int)syscall(SYS_connect, fd, addr, len);
}

static int kp_sys_listen(int fd, int backlog)
{
    return (int)syscall(SYS_listen, fd, backlog);
}

static int kp_sys_socket(int domain, int type, int protocol)
{
    return (int)syscall(SYS_socket, domain, type, protocol);
}

static int kp_sys_setsockopt(int fd, int level, int optname, const void *value, socklen_t len)
{
    return (int)syscall(SYS_setsockopt, fd, level, optname, value, len);
}

static void *kp_syscall(const char *name)
{
    static const struct {
        const char *name;
        void *fn;
    } calls[] = {
        {"connect", (void *)kp_sys_connect},
        {"listen", (void *)kp_sys_listen},
        {"socket", (void *)kp_sys_socket},
        {"setsockopt", (void *)kp_sys_setsockopt},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
        if (strcmp(calls[i].name, name) == 0)
            return calls[i].fn;
    return NULL;
}

void *kp_next_symbol(const char *name)
{
    if (kp_dlsym == NULL)
        return kp_syscall(name);
    return kp_dlsym(RTLD_NEXT, name);
}

/* The typed table of real functions (as cwrap socket_wrapper keeps one):
 * each entry is resolved on first use and cached; a race resolves it twice
 * to the same address, which is harmless. */
static void *_Atomic kp_next[KP_REAL_COUNT];

static const char *kp_real_name(enum kp_real_id id)
{
    return id == KP_REAL_SETSOCKOPT ? "setsockopt" : kp_variant.symbol;
}

void *kp_real_symbol(enum kp_real_id id)
{
    void *fn = atomic_load_explicit(&kp_next[id], memory_order_acquire);
    if (fn != NULL)
        return fn;
    int saved_errno = errno;
    fn = kp_next_symbol(kp_real_name(id));
    if (fn == NULL) {
        errno = ENOSYS;
        return NULL;
    }
    errno = saved_errno;
    atomic_store_explicit(&kp_next[id], fn, memory_order_release);
    return fn;
}

void *kp_real(void)
{
    return kp_real_symbol(KP_REAL_INTERPOSED);
}

int kp_setsockopt(int fd, int level, int optname, const void *value, socklen_t len)
{
    kp_setsockopt_fn real = (kp_setsockopt_fn)kp_real_symbol(KP_REAL_SETSOCKOPT);
    if (real == NULL)
        return -1; /* ENOSYS */
    return real(fd, level, optname, value, len);
}

int kp_raw_tcp_socket(void)
{
    return (int)syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
}
