/* real.c - find the next definition of the interposed function, once. */
#include "keepalive.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

static void *_Atomic kp_next;

void *kp_real(void)
{
    void *fn = atomic_load_explicit(&kp_next, memory_order_acquire);
    if (fn != NULL)
        return fn;
    int saved_errno = errno;
    fn = dlsym(RTLD_NEXT, kp_variant.symbol);
    if (fn == NULL) {
        errno = ENOSYS;
        return NULL;
    }
    errno = saved_errno;
    atomic_store_explicit(&kp_next, fn, memory_order_release);
    return fn;
}
