/*
 * oom.c: out of memory must be a null result, never a crash or an abort.
 *
 * For each allocating entry point in turn (malloc of small and of large blocks, calloc, realloc
 * growing blocks, reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc) the
 * program lowers RLIMIT_AS to the address space it uses now plus 256 MiB and allocates with that
 * function until a call fails. Then it checks that:
 *   - the failed call returned NULL with errno == ENOMEM (posix_memalign: returned ENOMEM, left
 *     errno and its result pointer untouched);
 *   - a realloc or reallocarray that failed left the old block as it was (content, usable size);
 *   - every block obtained before the failure still holds the pattern written into it (calloc'ed
 *     blocks were zero when they came; aligned blocks had their alignment);
 *   - realloc of a small and of a large block to 1 GiB fails the same way, leaving it intact.
 * Then it frees everything, raises the limit back and allocates, checks and frees 3000 blocks of
 * mixed sizes (8 B to 3 MiB), so the allocator must work again after its failures. Each entry
 * point runs in a child process of its own (forked from a process that has allocated a little),
 * so that memory one entry point leaves mapped does not add to the next one's headroom, and a
 * crash or abort names the entry point.
 *
 * Usage: oom. Prints one line per entry point and `oom: ok`, exits with 0; any failed check is
 * reported on stderr and the program exits with 1. Under an allocator that aborts or crashes
 * when memory runs out the process dies of that signal instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_BLOCKS (1 << 20)
#define HEADROOM ((rlim_t)256 << 20)

static void *blocks[MAX_BLOCKS];
static size_t sizes[MAX_BLOCKS];
static int failures;

static void fail(const char *entry, const char *what, size_t a, size_t b) {
    fprintf(stderr, "oom %s: %s (%zu, %zu)\n", entry, what, a, b);
    failures++;
}

/* The process's address space in bytes (VmSize), read without allocating much. */
static rlim_t address_space(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        perror("oom: /proc/self/status");
        exit(1);
    }
    char line[256];
    rlim_t kib = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmSize: %lu kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    if (kib == 0) {
        fprintf(stderr, "oom: no VmSize in /proc/self/status\n");
        exit(1);
    }
    return kib << 10;
}

static struct rlimit saved;

static void lower_limit(void) {
    struct rlimit r = saved;
    r.rlim_cur = address_space() + HEADROOM;
    if (setrlimit(RLIMIT_AS, &r) != 0) {
        perror("oom: setrlimit");
        exit(1);
    }
}

static void raise_limit(void) {
    if (setrlimit(RLIMIT_AS, &saved) != 0) {
        perror("oom: setrlimit (raise)");
        exit(1);
    }
}

static unsigned char pattern(size_t i) {
    return (unsigned char)(i * 167 + 13) | 1;
}

static void fill(void *p, size_t n, size_t i) {
    memset(p, pattern(i), n);
}

/* Whether the first `n` bytes of `p` hold block `i`'s pattern. */
static int intact(const void *p, size_t n, size_t i) {
    const unsigned char *c = p;
    unsigned char want = pattern(i);
    for (size_t k = 0; k < n; k++) {
        if (c[k] != want) {
            return 0;
        }
    }
    return 1;
}

static int zero(const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t k = 0; k < n; k++) {
        if (c[k] != 0) {
            return 0;
        }
    }
    return 1;
}

/* The allocating entry points, each as one call for block `i` (size chosen by the function). */
enum entry {
    MALLOC_SMALL,
    MALLOC_LARGE,
    CALLOC,
    REALLOC,
    REALLOCARRAY,
    POSIX_MEMALIGN,
    ALIGNED_ALLOC,
    MEMALIGN,
    VALLOC,
    PVALLOC,
    ENTRIES
};
static const char *const entry_names[ENTRIES] = {
    "malloc-small",  "malloc-large",  "calloc",   "realloc", "reallocarray",
    "posix_memalign", "aligned_alloc", "memalign", "valloc",  "pvalloc",
};

/* Sizes: a mix below 1 MiB for the small entry points, of 1..6 MiB for the large one, and for
 * the aligned ones a mix of both (each function must fail cleanly on either path). */
static size_t small_size(size_t i) {
    static const size_t s[] = {24, 100, 1000, 3000, 20000, 70000, 250000, 900000};
    return s[i % 8];
}
static size_t large_size(size_t i) {
    return ((size_t)1 << 20) + (i % 6) * ((size_t)1 << 20) + 12345;
}
static size_t mixed_size(size_t i) {
    return i % 3 == 2 ? large_size(i) : small_size(i);
}
static size_t alignment(size_t i) {
    static const size_t a[] = {16, 64, 4096, (size_t)256 << 10, (size_t)2 << 20};
    return a[i % 5];
}

/*
 * Grows `*p` (block `i`, `*size` bytes, holding its pattern) to `want` bytes with realloc or
 * reallocarray. Returns 1 on success (the new bytes filled), 0 on a failure that left the old
 * block intact, -1 on a failure that did not (reported).
 */
static int grow(enum entry e, void **p, size_t *size, size_t want, size_t i) {
    const char *name = entry_names[e];
    size_t old_usable = malloc_usable_size(*p);
    errno = 0;
    void *q = e == REALLOC ? realloc(*p, want) : reallocarray(*p, want / 8, 8);
    if (q == NULL) {
        int err = errno;
        if (err != ENOMEM) {
            fail(name, "failed without ENOMEM (errno, size)", (size_t)err, want);
        }
        if (malloc_usable_size(*p) != old_usable || !intact(*p, *size, i)) {
            fail(name, "a failed resize changed the old block (old size, new size)", *size, want);
            return -1;
        }
        return 0;
    }
    if (!intact(q, *size, i)) {
        fail(name, "a resize lost the content (old size, new size)", *size, want);
        return -1;
    }
    memset((char *)q + *size, pattern(i), want - *size);
    *p = q;
    *size = want;
    return 1;
}

/*
 * One attempt of entry point `e` for block `i`: returns the block (its size in sizes[i]) or
 * NULL when the call failed; a failure that breaks the rules is reported.
 */
static void *attempt(enum entry e, size_t i) {
    const char *name = entry_names[e];
    void *p = NULL;
    size_t n = 0, align = 0;
    errno = 0;
    switch (e) {
    case MALLOC_SMALL:
        n = small_size(i);
        p = malloc(n);
        break;
    case MALLOC_LARGE:
        n = large_size(i);
        p = malloc(n);
        break;
    case CALLOC:
        n = mixed_size(i);
        p = calloc(n / 8, 8);
        n = n / 8 * 8;
        if (p != NULL && !zero(p, n)) {
            fail(name, "calloc'ed block not zero (block, size)", i, n);
        }
        break;
    case REALLOC:
    case REALLOCARRAY: {
        /* A block that starts small and is grown in steps through the small classes into the
         * large path, up to 8 MiB; the caller stops at the first failed step. */
        size_t size = 8;
        p = malloc(size);
        if (p == NULL) {
            break;
        }
        fill(p, size, i);
        while (size < ((size_t)8 << 20)) {
            int r = grow(e, &p, &size, size * 2 + 8 * (i % 7), i);
            if (r <= 0) {
                sizes[i] = size;
                blocks[i] = p;
                return NULL; /* the old block is kept (and counted) by the caller */
            }
        }
        n = size;
        break;
    }
    case POSIX_MEMALIGN: {
        void *const untouched = (void *)(uintptr_t)0x5eed;
        void *out = untouched;
        n = mixed_size(i);
        align = alignment(i);
        errno = 12345;
        int r = posix_memalign(&out, align, n);
        if (r == 0) {
            p = out;
        } else {
            if (r != ENOMEM) {
                fail(name, "returned other than ENOMEM (result, size)", (size_t)r, n);
            }
            if (errno != 12345) {
                fail(name, "changed errno on failure (errno, size)", (size_t)errno, n);
            }
            if (out != untouched) {
                fail(name, "wrote its result on failure (block, size)", i, n);
            }
            return NULL;
        }
        break;
    }
    case ALIGNED_ALLOC:
        n = mixed_size(i);
        align = alignment(i);
        p = aligned_alloc(align, n);
        break;
    case MEMALIGN:
        n = mixed_size(i);
        align = alignment(i);
        p = memalign(align, n);
        break;
    case VALLOC:
        n = mixed_size(i);
        align = 4096;
        p = valloc(n);
        break;
    case PVALLOC:
        n = mixed_size(i);
        align = 4096;
        p = pvalloc(n);
        n = (n + 4095) / 4096 * 4096;
        break;
    case ENTRIES:
        break;
    }
    if (p == NULL) {
        if (errno != ENOMEM) {
            fail(name, "returned NULL without ENOMEM (errno, size)", (size_t)errno, n);
        }
        return NULL;
    }
    if (align != 0 && (uintptr_t)p % align != 0) {
        fail(name, "misaligned block (alignment, size)", align, n);
    }
    if (malloc_usable_size(p) < n) {
        fail(name, "usable size below the request (usable, size)", malloc_usable_size(p), n);
    }
    sizes[i] = n;
    return p;
}

/* Realloc of block `i` to 1 GiB must fail (the limit is far lower) and leave it as it was. */
static void realloc_far(const char *name, size_t i) {
    size_t usable = malloc_usable_size(blocks[i]);
    errno = 0;
    void *q = realloc(blocks[i], (size_t)1 << 30);
    if (q != NULL) {
        fail(name, "realloc to 1 GiB succeeded under the limit (block, size)", i, sizes[i]);
        blocks[i] = q;
        return;
    }
    if (errno != ENOMEM) {
        fail(name, "realloc to 1 GiB failed without ENOMEM (errno, block)", (size_t)errno, i);
    }
    if (malloc_usable_size(blocks[i]) != usable || !intact(blocks[i], sizes[i], i)) {
        fail(name, "a failed realloc to 1 GiB changed the block (block, size)", i, sizes[i]);
    }
}

static void run_entry(enum entry e) {
    const char *name = entry_names[e];
    int before = failures;
    size_t count = 0;
    lower_limit();
    for (;;) {
        if (count == MAX_BLOCKS) {
            fail(name, "never failed (blocks, headroom)", count, (size_t)HEADROOM);
            break;
        }
        blocks[count] = NULL;
        void *p = attempt(e, count);
        if (p == NULL) {
            if (blocks[count] != NULL) {
                count++; /* a resize failed: the block it left is checked and freed below */
            }
            break;
        }
        fill(p, sizes[count], count);
        blocks[count++] = p;
    }
    /* Still out of memory: one more call of the same kind must fail cleanly too. */
    for (size_t k = 0; k < 3 && count < MAX_BLOCKS; k++) {
        blocks[count] = NULL;
        void *p = attempt(e, count);
        if (p != NULL || blocks[count] != NULL) {
            if (p != NULL) {
                blocks[count] = p;
                fill(p, sizes[count], count);
            }
            count++;
        }
    }
    size_t small = count, large = count;
    for (size_t i = 0; i < count; i++) {
        if (sizes[i] <= 100000 && small == count) {
            small = i;
        }
        if (sizes[i] > ((size_t)1 << 20) && large == count) {
            large = i;
        }
    }
    if (small < count) {
        realloc_far(name, small);
    }
    if (large < count) {
        realloc_far(name, large);
    }
    for (size_t i = 0; i < count; i++) {
        if (!intact(blocks[i], sizes[i], i)) {
            fail(name, "a block obtained before the failure changed (block, size)", i, sizes[i]);
            break;
        }
    }
    for (size_t i = 0; i < count; i++) {
        free(blocks[i]);
    }
    raise_limit();

    /* Working again: mixed sizes, most small, some large, all checked. */
    size_t again = 3000;
    for (size_t i = 0; i < again; i++) {
        sizes[i] = i % 50 == 0 ? ((size_t)1 << 20) + (i % 3) * ((size_t)1 << 20) : 8 + (i * 2654435761u) % 20000;
        blocks[i] = malloc(sizes[i]);
        if (blocks[i] == NULL) {
            fail(name, "malloc failed after the limit was raised (block, size)", i, sizes[i]);
            again = i;
            break;
        }
        fill(blocks[i], sizes[i], i);
    }
    for (size_t i = 0; i < again; i++) {
        if (!intact(blocks[i], sizes[i], i)) {
            fail(name, "a block allocated after the limit was raised changed (block, size)", i, sizes[i]);
        }
        free(blocks[i]);
    }
    printf("oom %s: %zu blocks before the failure: %s\n", name, count, failures == before ? "ok" : "FAILED");
    fflush(stdout);
}

int main(void) {
    if (getrlimit(RLIMIT_AS, &saved) != 0) {
        perror("oom: getrlimit");
        return 1;
    }
    /* stdio's buffers and the allocator's first chunks exist before any limit is set. */
    printf("oom: headroom %lu MiB per entry point\n", (unsigned long)(HEADROOM >> 20));
    fflush(stdout);
    free(malloc(100));
    int bad = 0;
    for (int e = 0; e < ENTRIES; e++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("oom: fork");
            return 1;
        }
        if (pid == 0) {
            run_entry((enum entry)e);
            fflush(stdout);
            _exit(failures != 0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid) {
            perror("oom: waitpid");
            return 1;
        }
        if (WIFSIGNALED(status)) {
            fprintf(stderr, "oom %s: killed by signal %d\n", entry_names[e], WTERMSIG(status));
            bad++;
        } else if (WEXITSTATUS(status) != 0) {
            bad++;
        }
    }
    if (bad != 0) {
        fprintf(stderr, "oom: %d entry points failed\n", bad);
        return 1;
    }
    printf("oom: ok\n");
    return 0;
}
