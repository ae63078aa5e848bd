/* option.h - for the test helpers: one int socket option read back with
 * getsockopt(2), or -1 when it cannot be read. */
#ifndef KP_TEST_OPTION_H
#define KP_TEST_OPTION_H

#include <sys/socket.h>

static int option(int fd, int level, int name)
{
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -1;
}

#endif
