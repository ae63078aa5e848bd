/* options.c - the option table (options.def), expanded once, and what is
 * looked up in it. */
#include "keepalive.h"

#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/socket.h>

const struct kp_option_spec kp_options[KP_OPTION_COUNT] = {
#define KP_OPTION(id, name, variable, alias, min, max, special, dflt, unit, optname, where, rule, \
                  live, bpf_at, bpf_since, help)                                              \
    [KP_##id] = {variable, alias, min, max, special, dflt, optname, where, live, rule},
#include "options.def"
#undef KP_OPTION
};

const char *kp_option_name(int i)
{
    return i >= 0 && i < KP_OPTION_COUNT ? kp_options[i].variable : "SO_KEEPALIVE";
}

const char *kp_option_alias(int i)
{
    return i >= 0 && i < KP_OPTION_COUNT ? kp_options[i].alias : NULL;
}

int kp_ruled_option(int level, int optname)
{
    if (level == SOL_SOCKET)
        return optname == SO_KEEPALIVE ? KP_OPTION_COUNT : -1;
    if (level != IPPROTO_TCP)
        return -1;
    for (int i = 0; i < KP_OPTION_COUNT; i++)
        if (kp_options[i].ruled && kp_options[i].optname == optname)
            return i;
    return -1;
}

/* As msantos/libkeepalive derives it: with the defaults (15 + 15 * 9) s =
 * 150000 ms. Computed in long long and saturated, so 32767 + 32767 * 127 s
 * does not overflow an int. */
int kp_derive(int idle, int intvl, int cnt)
{
    if (idle <= 0 || intvl <= 0 || cnt <= 0)
        return 0;
    long long ms = ((long long)idle + (long long)intvl * cnt) * 1000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}
