/* rule.c - the precedence rule's per-process state: whether the program has
 * ever set a ruled option itself, and what a fresh TCP socket has (the
 * reference for "not set"). No per-socket tables, no locks. */
#include "keepalive.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static atomic_bool kp_program_chose;

void kp_program_sets_options(void)
{
    if (!atomic_load_explicit(&kp_program_chose, memory_order_relaxed))
        atomic_store_explicit(&kp_program_chose, true, memory_order_relaxed);
}

bool kp_program_set_options(void)
{
    return atomic_load_explicit(&kp_program_chose, memory_order_relaxed);
}

static int kp_fresh[KP_OPTION_COUNT];
static atomic_int kp_fresh_state; /* 0: unread, 1: being published, 2: ready */

/* What a fresh TCP socket of this process (its network namespace, its
 * sysctls) has for each ruled option: read once, on a socket made for it
 * with the system call; a value that cannot be read stays 0. */
void kp_fresh_values(int *out)
{
    if (atomic_load_explicit(&kp_fresh_state, memory_order_acquire) == 2) {
        memcpy(out, kp_fresh, sizeof kp_fresh);
        return;
    }
    int saved_errno = errno;
    memset(out, 0, sizeof kp_fresh);
    int fd = kp_raw_tcp_socket();
    if (fd >= 0) {
        for (int i = 0; i < KP_OPTION_COUNT; i++) {
            int value = 0;
            socklen_t len = sizeof value;
            if (kp_options[i].ruled &&
                getsockopt(fd, IPPROTO_TCP, kp_options[i].optname, &value, &len) == 0)
                out[i] = value;
        }
        close(fd);
    }
    errno = saved_errno;
    int expected = 0;
    if (fd >= 0 && atomic_compare_exchange_strong(&kp_fresh_state, &expected, 1)) {
        memcpy(kp_fresh, out, sizeof kp_fresh);
        atomic_store_explicit(&kp_fresh_state, 2, memory_order_release);
    }
}
