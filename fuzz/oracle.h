/* oracle.h - the contract for one numeric value, written out plainly, for
 * both fuzz targets: an optional '-' and one or more decimal digits, nothing
 * else; accepted are 0, `special` (when non-zero) and min..max. On success
 * stores the value and returns 1; otherwise returns 0 and leaves it alone. */
#ifndef KP_FUZZ_ORACLE_H
#define KP_FUZZ_ORACLE_H

#include <errno.h>
#include <stdlib.h>

static int oracle_number(const char *text, long min, long max, long special, long *value)
{
    const char *p = text;
    if (*p == '-')
        p++;
    if (*p == '\0')
        return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return 0;
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    if (errno == ERANGE)
        return 0;
    if (v == 0 || (special != 0 && v == special) || (v >= min && v <= max)) {
        *value = (long)v;
        return 1;
    }
    return 0;
}

#endif
