/*
 * getenv_spy.so - interposes getenv(3) and secure_getenv(3) and reports on
 * stderr every lookup of a keepalive-preload variable, then passes it on.
 * Shows whether the library reads the environment at all.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void spy(const char *name)
{
    if (strncmp(name, "TCP_", 4) != 0 && strncmp(name, "KEEP", 4) != 0 &&
        strcmp(name, "LIBKEEPALIVE_DEBUG") != 0)
        return;
    if (write(STDERR_FILENO, "getenv_spy: ", 12) < 0 ||
        write(STDERR_FILENO, name, strlen(name)) < 0 || write(STDERR_FILENO, "\n", 1) < 0)
        _exit(3);
}

char *getenv(const char *name)
{
    spy(name);
    char *(*next)(const char *) = (char *(*)(const char *))dlsym(RTLD_NEXT, "getenv");
    return next(name);
}

char *secure_getenv(const char *name)
{
    spy(name);
    char *(*next)(const char *) = (char *(*)(const char *))dlsym(RTLD_NEXT, "secure_getenv");
    return next(name);
}
