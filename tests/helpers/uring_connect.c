/*
 * uring_connect - connect a TCP socket to 127.0.0.1:PORT through io_uring and
 * report the socket's keepalive options, read back with getsockopt, as one
 * JSON line on stdout (the same keys as probe.c):
 *
 *   uring_connect connect PORT   socket(2), then IORING_OP_CONNECT
 *   uring_connect socket PORT    IORING_OP_SOCKET (Linux 5.19), then IORING_OP_CONNECT
 *
 * Neither path calls connect(2), and the second not socket(2) either: the
 * preload libraries see nothing. Exit status 2 with "unsupported" on stderr
 * when the kernel refuses the operation (EINVAL/EOPNOTSUPP), 1 on another error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "option.h"

/* IORING_OP_SOCKET in include/uapi/linux/io_uring.h (Linux 5.19). */
#define KP_IORING_OP_SOCKET 45

/* Submit one prepared request and wait for its completion: its result. */
static int submit_and_wait(struct io_uring *ring)
{
    struct io_uring_cqe *cqe;
    int ret = io_uring_submit(ring);
    if (ret < 0)
        return ret;
    ret = io_uring_wait_cqe(ring, &cqe);
    if (ret < 0)
        return ret;
    ret = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return ret;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "uring_connect: %s: %s\n", what, strerror(err));
    if (err == EINVAL || err == EOPNOTSUPP) {
        fprintf(stderr, "unsupported\n");
        return 2;
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct io_uring ring;
    struct sockaddr_in addr;
    int fd, ret;

    if (argc != 3 || (strcmp(argv[1], "connect") != 0 && strcmp(argv[1], "socket") != 0)) {
        fprintf(stderr, "usage: uring_connect connect|socket PORT\n");
        return 1;
    }
    ret = io_uring_queue_init(4, &ring, 0);
    if (ret < 0)
        return fail("io_uring_queue_init", -ret);

    if (strcmp(argv[1], "socket") == 0) {
        /* io_uring_prep_socket() as liburing >= 2.2 has it, by number, so that
         * the helper builds with older liburing too (the kernel decides). */
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_rw(KP_IORING_OP_SOCKET, sqe, AF_INET, NULL, 0, SOCK_STREAM);
        sqe->rw_flags = 0;
        fd = submit_and_wait(&ring);
        if (fd < 0)
            return fail("IORING_OP_SOCKET", -fd);
    } else {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return fail("socket", errno);
    }

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[2]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_connect(sqe, fd, (struct sockaddr *)&addr, sizeof addr);
    ret = submit_and_wait(&ring);
    if (ret < 0)
        return fail("IORING_OP_CONNECT", -ret);

    printf("{\"call\": \"%s\", \"SO_KEEPALIVE\": %d, \"TCP_KEEPIDLE\": %d, "
           "\"TCP_KEEPINTVL\": %d, \"TCP_KEEPCNT\": %d, \"TCP_USER_TIMEOUT\": %d}\n",
           argv[1], option(fd, SOL_SOCKET, SO_KEEPALIVE), option(fd, IPPROTO_TCP, TCP_KEEPIDLE),
           option(fd, IPPROTO_TCP, TCP_KEEPINTVL), option(fd, IPPROTO_TCP, TCP_KEEPCNT),
           option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
    fflush(stdout);
    close(fd);
    io_uring_queue_exit(&ring);
    return 0;
}
