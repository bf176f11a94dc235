/*
 * child.h: what the fork tests' children share. A child of a fork may only call async-signal-safe
 * functions (stdio's locks may have been taken by a thread that does not exist there), so it
 * reports with write(2) and leaves with _exit(2).
 */
#ifndef FAM_TESTS_CHILD_H
#define FAM_TESTS_CHILD_H

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* A child whose malloc returned NULL says so, naming the program `prog` and errno, and exits
 * with status 3. */
static inline void child_failed_malloc(const char *prog) {
    char msg[128];
    int e = errno;
    size_t len = strlen(prog);
    if (len > 64)
        len = 64;
    memcpy(msg, prog, len);
    static const char what[] = ": malloc returned NULL in a child, errno ";
    memcpy(msg + len, what, sizeof what - 1);
    len += sizeof what - 1;
    char digits[12];
    int n = 0;
    do {
        digits[n++] = (char)('0' + e % 10);
        e /= 10;
    } while (e != 0 && n < 11);
    while (n > 0)
        msg[len++] = digits[--n];
    msg[len++] = '\n';
    ssize_t r = write(2, msg, len);
    (void)r;
    _exit(3);
}

#endif
