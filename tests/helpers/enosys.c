/*
 * enosys - the connect(2) front-end (src/c/connect.c, compiled with its
 * function renamed to kp_test_connect) when the real function cannot be
 * found: this variant looks up a symbol nothing defines. The call must fail
 * with ENOSYS, not crash. Prints "RET ERRNO-IS-ENOSYS".
 */
#include "keepalive.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

const struct kp_variant kp_variant = {"enosys", "kp_no_such_function", KP_ON(connect)};

int kp_test_connect(int fd, const struct sockaddr *addr, socklen_t len);

int main(void)
{
    struct sockaddr_storage ss = {0};
    errno = 0;
    int ret = kp_test_connect(-1, (struct sockaddr *)&ss, sizeof ss);
    printf("%d %d\n", ret, errno == ENOSYS);
    return 0;
}
