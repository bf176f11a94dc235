/*
 * mapcount.c: free must survive an munmap that the kernel refuses, and must keep errno.
 *
 * The kernel refuses an munmap that would split a mapping when the process already holds
 * vm.max_map_count mappings (ENOMEM). The program allocates a 48 MiB block and large blocks of
 * other sizes (some above what the allocator caches, so their free unmaps them; the kernel
 * places them next to each other, so their mappings merge and unmapping one splits the merged
 * one), then mmaps single pages with alternating protections (so they do not merge) until mmap
 * fails. With every mapping slot taken it
 *   - sets errno to a sentinel and frees the large blocks (and a few small ones): none may
 *     abort, and errno must still hold the sentinel after each free;
 *   - calls malloc for a large and a small block, which must return a usable block or NULL with
 *     errno == ENOMEM.
 * Then it unmaps its pages and checks that malloc and free work again (blocks of 8 B to 40 MiB,
 * filled and checked).
 *
 * munmap is wrapped (this program defines it and calls the system call itself), so the program
 * knows how often the kernel refused one; at least one refusal during the frees is required,
 * or the run did not test what it is for.
 *
 * Usage: mapcount. Prints `mapcount: ok` and a line of counts, exits with 0; a failed check is
 * reported on stderr (exit status 1). If the mapping limit cannot be reached within about 5 s
 * (a very high vm.max_map_count) it prints `mapcount: SKIP ...` and exits with 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SENTINEL 4242

static volatile int counting;
static long munmap_calls, munmap_refused;

/* Every munmap in the process, the allocator's included, comes here first. */
int munmap(void *addr, size_t len) {
    long r = syscall(SYS_munmap, addr, len);
    if (counting) {
        munmap_calls++;
        if (r != 0 && errno == ENOMEM) {
            munmap_refused++;
        }
    }
    return r == 0 ? 0 : -1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long read_max_map_count(void) {
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long n = -1;
    if (f == NULL || fscanf(f, "%ld", &n) != 1) {
        perror("mapcount: /proc/sys/vm/max_map_count");
        exit(1);
    }
    fclose(f);
    return n;
}

static int failures;

static void fail(const char *what, size_t a) {
    fprintf(stderr, "mapcount: %s (%zu)\n", what, a);
    failures++;
}

static unsigned char pattern(size_t i) {
    return (unsigned char)(i * 29 + 3) | 0x80;
}

/* Blocks are checked at their first and last page and at every 1 MiB between. */
static void mark(char *p, size_t n, size_t i) {
    for (size_t off = 0; off < n; off += (size_t)1 << 20) {
        memset(p + off, pattern(i), n - off < 4096 ? n - off : 4096);
    }
    memset(p + n - (n < 4096 ? n : 4096), pattern(i), n < 4096 ? n : 4096);
}

static int marked(const char *p, size_t n, size_t i) {
    for (size_t off = 0; off < n; off += (size_t)1 << 20) {
        if ((unsigned char)p[off] != pattern(i)) {
            return 0;
        }
    }
    return (unsigned char)p[n - 1] == pattern(i);
}

#define LARGE 7
static const size_t large_mib[LARGE] = {48, 80, 100, 72, 5, 20, 130};

int main(void) {
    long max = read_max_map_count();
    printf("mapcount: vm.max_map_count %ld\n", max);
    fflush(stdout);

    char *large[LARGE];
    for (int i = 0; i < LARGE; i++) {
        size_t n = large_mib[i] << 20;
        large[i] = malloc(n);
        if (large[i] == NULL) {
            fail("malloc of a large block failed before the test (MiB)", large_mib[i]);
            return 1;
        }
        mark(large[i], n, (size_t)i);
    }
    char *small[16];
    for (int i = 0; i < 16; i++) {
        small[i] = malloc(48 + (size_t)i * 100);
        memset(small[i], pattern((size_t)i + 100), 48 + (size_t)i * 100);
    }

    /* Room for the page addresses, mapped before the limit is reached. */
    size_t room = (size_t)max + 1024;
    if (room > ((size_t)1 << 24)) {
        room = (size_t)1 << 24;
    }
    void **pages = mmap(NULL, room * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED) {
        perror("mapcount: mmap of the page table");
        return 1;
    }
    size_t npages = 0;
    double start = now();
    int full = 0;
    while (npages < room) {
        int prot = npages % 2 ? PROT_READ : PROT_READ | PROT_WRITE;
        void *p = mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            full = 1;
            break;
        }
        pages[npages++] = p;
        if (npages % 4096 == 0 && now() - start > 5.0) {
            break;
        }
    }
    if (!full) {
        for (size_t i = 0; i < npages; i++) {
            munmap(pages[i], 4096);
        }
        printf("mapcount: SKIP (%zu mappings in %.1f s without reaching vm.max_map_count %ld)\n", npages,
               now() - start, max);
        return 0;
    }

    /* Every mapping slot is taken now. Free the large blocks; errno must survive each free. */
    counting = 1;
    static const int order[LARGE] = {1, 3, 0, 2, 5, 4, 6};
    for (int k = 0; k < LARGE; k++) {
        int i = order[k];
        if (!marked(large[i], large_mib[i] << 20, (size_t)i)) {
            fail("a large block changed before its free (MiB)", large_mib[i]);
        }
        errno = SENTINEL;
        free(large[i]);
        if (errno != SENTINEL) {
            fail("free of a large block changed errno (MiB)", large_mib[i]);
        }
    }
    for (int i = 0; i < 16; i += 2) {
        errno = SENTINEL;
        free(small[i]);
        if (errno != SENTINEL) {
            fail("free of a small block changed errno (size)", 48 + (size_t)i * 100);
        }
    }
    long refused = munmap_refused, calls = munmap_calls;
    /* Still at the limit: an allocation either works or fails cleanly. */
    static const size_t tries[] = {(size_t)200 << 20, (size_t)40 << 20, 3000, 100};
    for (int k = 0; k < 4; k++) {
        errno = 0;
        char *p = malloc(tries[k]);
        if (p == NULL) {
            if (errno != ENOMEM) {
                fail("malloc at the mapping limit returned NULL without ENOMEM (size)", tries[k]);
            }
        } else {
            mark(p, tries[k], 7);
            if (!marked(p, tries[k], 7)) {
                fail("a block allocated at the mapping limit does not hold its content (size)", tries[k]);
            }
            free(p);
        }
    }
    counting = 0;

    for (size_t i = 0; i < npages; i++) {
        if (munmap(pages[i], 4096) != 0) {
            fail("munmap of the program's own page failed (page)", i);
            break;
        }
    }
    munmap(pages, room * sizeof(void *));

    /* Working again. */
    for (int round = 0; round < 3; round++) {
        enum { N = 400 };
        char *b[N];
        size_t n[N];
        for (size_t i = 0; i < N; i++) {
            n[i] = i % 40 == 0 ? ((size_t)1 + i % 40) << 20 : 8 + (i * 7919) % 30000;
            if (i == 1) {
                n[i] = (size_t)40 << 20;
            }
            b[i] = malloc(n[i]);
            if (b[i] == NULL) {
                fail("malloc failed after the pages were unmapped (size)", n[i]);
                return 1;
            }
            mark(b[i], n[i], i);
        }
        for (size_t i = 0; i < N; i++) {
            if (!marked(b[i], n[i], i)) {
                fail("a block allocated after the pages were unmapped changed (size)", n[i]);
            }
            free(b[i]);
        }
    }
    for (int i = 1; i < 16; i += 2) {
        free(small[i]);
    }

    printf("mapcount: %zu pages mapped to reach the limit; the frees made %ld munmap calls, %ld refused\n",
           npages, calls, refused);
    if (refused == 0) {
        fail("no munmap was refused during the frees: the run did not test a refused munmap", 0);
    }
    if (failures != 0) {
        return 1;
    }
    printf("mapcount: ok\n");
    return 0;
}
