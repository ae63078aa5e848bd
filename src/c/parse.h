/* parse.h - strict parsing of one environment value; no I/O, no state. */
#ifndef KP_PARSE_H
#define KP_PARSE_H

#include <stdbool.h>

/*
 * Parse `text` as a whole decimal integer: an optional '-' followed by one or
 * more ASCII digits, nothing else (no whitespace, no '+', no "0x").  Leading
 * zeros are decimal ("010" is ten).  Accepted values are 0, `special` when it
 * is non-zero, and min..max.  On success stores the value in *out and returns
 * true; otherwise leaves *out alone and returns false.
 */
bool kp_parse_int(const char *text, long min, long max, long special, int *out);

/* "off" in any case: true. Unset or empty or "on" (any case): false.
 * Anything else: false, and *valid is set to false. */
bool kp_parse_off(const char *text, bool *valid);

#endif
