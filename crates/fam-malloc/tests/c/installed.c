/*
 * installed.c: a C program built against an installed fam-malloc (`cargo xtask install`) with
 * nothing but `pkg-config --cflags --libs fam-malloc`, as a C project would build.
 *
 *   -DLINKED     linked with -lfam_malloc; also calls the library's own functions through
 *                the installed header
 *   -DPRELOADED  built without the library, run with LD_PRELOAD=libfam_malloc.so.0
 *
 * Either way the program's `malloc` must be fam-alloc's: the object that defines it for this
 * program (dladdr) is libfam_malloc.so.0, and blocks of every size keep their content. Prints
 * one line and exits 0 on success, 1 with a message otherwise.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef LINKED
#include <fam_malloc.h>
#endif

static int fail(const char *what) {
    fprintf(stderr, "installed: %s\n", what);
    return 1;
}

int main(void) {
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    if (!dladdr((void *)m, &info) || !info.dli_fname)
        return fail("dladdr found no object for malloc");
    if (!strstr(info.dli_fname, "libfam_malloc.so"))
        return fail(info.dli_fname);
    enum { N = 200 };
    unsigned char *blocks[N];
    for (int i = 0; i < N; i++) {
        size_t size = (size_t)1 << (i % 23);
        blocks[i] = malloc(size);
        if (!blocks[i])
            return fail("malloc returned NULL");
        memset(blocks[i], i, size < 64 ? size : 64);
    }
    for (int i = 0; i < N; i++) {
        size_t size = (size_t)1 << (i % 23);
        for (size_t j = 0; j < (size < 64 ? size : 64); j++)
            if (blocks[i][j] != (unsigned char)i)
                return fail("a block lost its content");
        free(blocks[i]);
    }
#ifdef LINKED
    if (!fam_version() || !*fam_version())
        return fail("fam_version is empty");
    FILE *null = fopen("/dev/null", "w");
    if (!null || fam_write_stats(fileno(null), "json") != 0)
        return fail("fam_write_stats failed");
    fclose(null);
    printf("installed (linked): fam-malloc %s from %s\n", fam_version(), info.dli_fname);
#else
    printf("installed (preloaded): malloc from %s\n", info.dli_fname);
#endif
    return 0;
}
