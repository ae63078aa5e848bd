/* real.c - find the next definitions of the functions we interpose, once each. */
#include "keepalive.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

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
    fn = dlsym(RTLD_NEXT, kp_real_name(id));
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
