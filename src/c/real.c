/* real.c - find the next definition of the interposed function, once. */
#include "keepalive.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
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

static void *kp_syscall(const char *name)
{
    static const struct {
        const char *name;
        void *fn;
    } calls[] = {
        {"connect", (void *)kp_sys_connect},
        {"listen", (void *)kp_sys_listen},
        {"socket", (void *)kp_sys_socket},
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

static void *_Atomic kp_next;

void *kp_real(void)
{
    void *fn = atomic_load_explicit(&kp_next, memory_order_acquire);
    if (fn != NULL)
        return fn;
    int saved_errno = errno;
    fn = kp_next_symbol(kp_variant.symbol);
    if (fn == NULL) {
        errno = ENOSYS;
        return NULL;
    }
    errno = saved_errno;
    atomic_store_explicit(&kp_next, fn, memory_order_release);
    return fn;
}
