/*
 * api.c: the library's C interface seen from C, through its header: the error conventions,
 * alignments, the structures mallinfo and mallinfo2 return by value, and the fam_* functions.
 * Linked against the library (static or shared). Prints "api: ok" and exits with 0, or names
 * each failed check on stderr and exits with 1.
 */
#include "fam_malloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "api.c:%d: check failed: %s\n", __LINE__, #cond);                      \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Keeps the compiler from folding calls whose arguments it could see. */
static size_t opaque(size_t v) {
    volatile size_t x = v;
    return x;
}

/* Hides a pointer's history, so the compiler does not treat a failed realloc as a free. */
static void *opaque_ptr(void *p) {
    void *volatile x = p;
    return x;
}

int main(void) {
    /* malloc: alignment, usable size, unique zero-size blocks. */
    for (size_t n = 0; n < 200; n++) {
        char *p = malloc(opaque(n));
        CHECK(p != NULL);
        CHECK((uintptr_t)p % (n > 8 ? 16 : 8) == 0);
        CHECK(malloc_usable_size(p) >= n);
        memset(p, 0xab, n);
        free(p);
    }
    void *z1 = malloc(opaque(0)), *z2 = malloc(opaque(0));
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    free(z1);
    free(z2);

    /* Failures set errno to ENOMEM and never return a small block. */
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX / 2)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(opaque(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM);
    char *keep = malloc(32);
    strcpy(keep, "still here");
    errno = 0;
    CHECK(realloc(opaque_ptr(keep), opaque(SIZE_MAX)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(opaque_ptr(keep), opaque(SIZE_MAX), 2) == NULL && errno == ENOMEM);
    CHECK(strcmp(keep, "still here") == 0);
    CHECK(realloc(keep, 0) == NULL);

    /* The alignment rules of each function. */
    void *p = (void *)0x1;
    errno = 1234;
    CHECK(posix_memalign(&p, opaque(24), 8) == EINVAL && errno == 1234 && p == (void *)0x1);
    CHECK(posix_memalign(&p, opaque(4), 8) == EINVAL);
    CHECK(posix_memalign(&p, opaque(256), 8) == 0 && (uintptr_t)p % 256 == 0);
    free(p);
    errno = 0;
    CHECK(aligned_alloc(opaque(24), 64) == NULL && errno == EINVAL);
    p = aligned_alloc(opaque(4096), 100);
    CHECK(p != NULL && (uintptr_t)p % 4096 == 0);
    free(p);
    p = memalign(opaque(48), 100);
    CHECK(p != NULL && (uintptr_t)p % 64 == 0);
    free(p);
    long page = sysconf(_SC_PAGESIZE);
    p = valloc(opaque(10));
    CHECK(p != NULL && (uintptr_t)p % (uintptr_t)page == 0);
    free(p);
    p = pvalloc(opaque(10));
    CHECK(p != NULL && (uintptr_t)p % (uintptr_t)page == 0 &&
          malloc_usable_size(p) >= (size_t)page);
    free(p);

    /* calloc zeroes memory that was dirty before. */
    char *dirty = malloc(1000);
    memset(dirty, 0xff, 1000);
    free(dirty);
    unsigned char *clean = calloc(10, 100);
    for (int i = 0; i < 1000; i++) {
        if (clean[i] != 0) {
            CHECK(clean[i] == 0);
            break;
        }
    }
    free(clean);

    /* Tuning and reporting. */
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
    CHECK(mallopt(M_ARENA_MAX, 2) == 1);
    CHECK(mallopt(12345, 0) == 0);
    void *blocks[300];
    for (int i = 0; i < 300; i++) {
        blocks[i] = malloc(100000);
    }
    for (int i = 0; i < 300; i++) {
        free(blocks[i]);
    }
    struct mallinfo2 before = mallinfo2();
    CHECK(before.fsmblks > 0);
    CHECK(before.fordblks >= before.fsmblks + before.keepcost);
    CHECK(malloc_trim(0) == 1);
    struct mallinfo2 after = mallinfo2();
    CHECK(after.fsmblks == 0 && after.keepcost == 0 && after.ordblks > 0);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
    CHECK((size_t)old.ordblks == after.ordblks && old.keepcost == 0);
    CHECK(fam_trim() == 0);
    const char *version = fam_version();
    CHECK(version[0] >= '0' && version[0] <= '9' && strchr(version, '.') != NULL);

    /* Options by name: read, set, refused names and values (errno EINVAL, nothing changed). */
    long v = 0;
    CHECK(fam_option_get("purge_delay", &v) == 0 && v == 100);
    CHECK(fam_option_set("purge_delay", 250) == 0);
    CHECK(fam_option_get("purge_delay", &v) == 0 && v == 250);
    CHECK(fam_option_set("purge_delay", -1) == 0);
    CHECK(fam_option_get("purge_delay", &v) == 0 && v == -1);
    CHECK(fam_option_get("retain_empty", &v) == 0 && v == 64);
    errno = 0;
    CHECK(fam_option_set("retain_empty", -3) == -1 && errno == EINVAL);
    CHECK(fam_option_get("retain_empty", &v) == 0 && v == 64);
    errno = 0;
    CHECK(fam_option_set("background_purge", 2) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(fam_option_set("no_such_option", 1) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(fam_option_get("no_such_option", &v) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(fam_option_get(NULL, &v) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(fam_option_get("purge_delay", NULL) == -1 && errno == EINVAL);
    CHECK(fam_option_get("background_purge", &v) == 0 && v == 0);
    CHECK(fam_option_set("background_purge", 1) == 0);
    CHECK(fam_option_get("background_purge", &v) == 0 && v == 1);
    CHECK(fam_option_set("background_purge", 0) == 0);
    CHECK(fam_option_set("purge_delay", 100) == 0);

    if (failures != 0) {
        fprintf(stderr, "api: %d checks failed\n", failures);
        return 1;
    }
    printf("api: ok\n");
    return 0;
}
