/* variant.c - which library this is; compiled once per variant with the
 * row of variants.def that CMakeLists.txt passes in KP_SYMBOL and KP_LIBRARY. */
#include "keepalive.h"

#if !defined(KP_SYMBOL) || !defined(KP_LIBRARY)
#error "build with -DKP_SYMBOL=<symbol> -DKP_LIBRARY=<library> (see CMakeLists.txt)"
#endif

#define KP_STRING_(x) #x
#define KP_STRING(x) KP_STRING_(x)
#define KP_WHERE_(symbol) KP_ON(symbol)
#define KP_WHERE(symbol) KP_WHERE_(symbol)

const struct kp_variant kp_variant = {KP_STRING(KP_LIBRARY), KP_STRING(KP_SYMBOL),
                                      KP_WHERE(KP_SYMBOL)};
