/*
 * uring_connect - a TCP socket created with IORING_OP_SOCKET (or socket(2))
 * and connected with IORING_OP_CONNECT: no C library socket call at all.
 * Reports SO_KEEPALIVE and TCP_KEEPIDLE read back, as one JSON line.
 *
 *   uring_connect socket|uring PORT    who creates the socket; io_uring connects
 *
 * Exit 77 when the kernel lacks the io_uring operation (ENOSYS, EINVAL,
 * EOPNOTSUPP from the ring).
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

#include "option.h"

static int submit(struct io_uring *ring)
{
    struct io_uring_cqe *cqe;
    if (io_uring_submit(ring) < 0 || io_uring_wait_cqe(ring, &cqe) != 0)
        return -EIO;
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return res;
}

static int unsupported(int res)
{
    return res == -ENOSYS || res == -EINVAL || res == -EOPNOTSUPP;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) != 0)
        return 77;
    int fd;
    if (strcmp(argv[1], "uring") == 0) {
        io_uring_prep_socket(io_uring_get_sqe(&ring), AF_INET, SOCK_STREAM, 0, 0);
        fd = submit(&ring);
        if (unsupported(fd))
            return 77;
    } else {
        fd = (int)socket(AF_INET, SOCK_STREAM, 0);
    }
    if (fd < 0)
        return 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a.sin_port = htons((unsigned short)atoi(argv[2]));
    io_uring_prep_connect(io_uring_get_sqe(&ring), fd, (struct sockaddr *)&a, sizeof a);
    int res = submit(&ring);
    if (unsupported(res))
        return 77;
    if (res != 0)
        return 1;
    printf("{\"SO_KEEPALIVE\": %d, \"TCP_KEEPIDLE\": %d}\n", option(fd, SOL_SOCKET, SO_KEEPALIVE),
           option(fd, IPPROTO_TCP, TCP_KEEPIDLE));
    return 0;
}
