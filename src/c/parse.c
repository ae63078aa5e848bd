/* parse.c - strict parsing of configuration values (fuzzed by fuzz/parse_fuzz.c). */
#include "parse.h"

#include <limits.h>
#include <stddef.h>
#include <strings.h>

bool kp_parse_int(const char *text, long min, long max, long special, int *out)
{
    if (text == NULL)
        return false;
    const char *p = text;
    bool negative = (*p == '-');
    if (negative)
        p++;
    if (*p == '\0')
        return false;

    /* Accumulate in long long and stop once past INT_MAX + 1: every bound is
     * an int, so any larger magnitude is out of range whatever it is. */
    long long magnitude = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        if (magnitude <= (long long)INT_MAX + 1)
            magnitude = magnitude * 10 + (*p - '0');
    }
    long long value = negative ? -magnitude : magnitude;
    if (value == 0 || (special != 0 && value == special) || (value >= min && value <= max)) {
        *out = (int)value;
        return true;
    }
    return false;
}

bool kp_parse_mode(const char *text, enum kp_mode *mode)
{
    if (text == NULL)
        return false;
    if (*text == '\0' || strcasecmp(text, "on") == 0)
        *mode = KP_MODE_ON;
    else if (strcasecmp(text, "off") == 0)
        *mode = KP_MODE_OFF;
    else if (strcasecmp(text, "force") == 0)
        *mode = KP_MODE_FORCE;
    else
        return false;
    return true;
}
