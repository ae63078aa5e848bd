/*
 * early.so - a preload library whose constructor opens a TCP connection, so
 * that connect(2) (and socket(2)) reach keepalive-preload before its own
 * constructor has run. glibc runs preload constructors last-listed first:
 * LD_PRELOAD=libkeepalive.so:early.so runs this one first.
 *
 * Connects to 127.0.0.1:$KP_EARLY_PORT and writes to stdout:
 *   early: SO_KEEPALIVE=1 TCP_KEEPIDLE=7
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void early(void)
{
    const char *port = getenv("KP_EARLY_PORT");
    if (port == NULL)
        return;
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((unsigned short)atoi(port)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int on = -1, value = -1;
    socklen_t len = sizeof on;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len);
        getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &value, &len);
    }
    char line[80];
    int n = snprintf(line, sizeof line, "early: SO_KEEPALIVE=%d TCP_KEEPIDLE=%d\n", on, value);
    if (write(STDOUT_FILENO, line, (size_t)n) < 0)
        _exit(3);
    if (fd >= 0)
        close(fd);
}
