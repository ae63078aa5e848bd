/* parse.h - strict parsing of one configuration value; no I/O, no state. */
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

/* KEEPALIVE's values, in any case: "off", "on" (also empty) and "force". */
enum kp_mode { KP_MODE_ON, KP_MODE_OFF, KP_MODE_FORCE };

/* Parse KEEPALIVE's value: true and *mode set for "on", "off", "force" (any
 * case) or the empty string (on); false, *mode untouched, otherwise. */
bool kp_parse_mode(const char *text, enum kp_mode *mode);

#endif
