/*
 * badptr.c: bad pointers given to free and malloc_usable_size are refused, never a segfault.
 *
 * A worker thread keeps a set of live blocks of 8 B to 64 MiB (so the chunks it allocates from
 * hold its own blocks and the allocator's free ones, nothing of the C library's). In a loop it
 * makes a candidate pointer of one of these kinds:
 *   interior   inside a live block (not its start)
 *   past       just past the end of a live block (p + malloc_usable_size(p)) or a few blocks on
 *   before     a little before the start of a live block
 *   chunk      anywhere in the 4 MiB chunk of a live block, its header included, or in the chunk
 *              before or after it; for a large block also the run's base and its chunk starts
 *   freed      the start of, or a pointer into, a recently freed block
 *   stack      around a local variable
 *   global     around a global array, and the address of a function
 *   mmapped    inside pages the program mapped itself
 *   random     a random 64-bit value
 *   low        a small address (1 to 64 KiB)
 *   kernel     an address in the kernel's half of the address space
 *   null       NULL (the one candidate that is not bad: free and malloc_usable_size do nothing)
 * skips a candidate that is the exact start of one of its live blocks (and a candidate made from
 * one of its blocks that lands in a chunk none of its blocks touches, which may hold another
 * thread's live blocks, see is_foreign_chunk), and calls free or
 * malloc_usable_size with it under sigsetjmp. The allocator must report the pointer and abort:
 * a SIGABRT handler counts the abort and siglongjmps back (glibc's abort() resets its own state
 * before it raises the signal, and the allocator reports before it changes anything, so the
 * loop can go on). SIGSEGV and SIGBUS handlers print the pointer and exit with status 1. Every
 * few iterations a live block is checked, freed and replaced by a new one, so the allocator's
 * state changes under the probes.
 *
 * Usage: badptr [ITERATIONS [SEED [KINDS]]], 100000 iterations by default; KINDS (a comma list
 * of the kinds above, all by default) is for narrowing down a failure. Prints the counts per kind
 * and `badptr: ok`, and exits with 0 when the number of aborts equals the number of calls that
 * did not return, and no call returned except those on NULL. A call on a bad pointer that
 * returned is printed (the first few) and fails the run; after such a free the heap may be
 * corrupt, so the loop stops there. Run it with stderr sent to /dev/null: every refused pointer
 * writes its report line there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK ((uintptr_t)4 << 20)
#define LIVE 48
#define FREED 64
#define MAPPED_PAGES 16

enum kind { INTERIOR, PAST, BEFORE, CHUNKK, FREEDK, STACK, GLOBAL, MMAPPED, RANDOM, LOW, KERNEL, NULLK, KINDS };
static const char *const kind_names[KINDS] = {"interior", "past",    "before", "chunk",  "freed", "stack",
                                              "global",   "mmapped", "random", "low",    "kernel", "null"};

static long iterations = 100000;
static uint64_t seed = 1;
static int enabled[KINDS];

static char global_array[256];
static char *mapped;

static struct {
    char *p;
    size_t size;   /* asked for */
    size_t usable; /* malloc_usable_size */
    unsigned tag;
} live[LIVE];
static uintptr_t freed_start[FREED];
static size_t freed_size[FREED];
static unsigned nfreed;

/* Counts, per kind and in all. */
static long calls[KINDS], aborted[KINDS], returned[KINDS], skipped, skipped_foreign;
static long jumps, aborts_seen, bad_returns, block_errors;

/* What is being probed, for the handlers. */
static sigjmp_buf probe_env;
static volatile sig_atomic_t probing;
static volatile uintptr_t probe_ptr;
static volatile int probe_op, probe_kind;

static uint64_t rng_state;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) {
    return n == 0 ? 0 : next_random() % n;
}

/* Writes without allocating, for the signal handlers. */
static void put(const char *s) {
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}
static void put_hex(uintptr_t v) {
    char buf[19];
    int n = 18;
    buf[n] = 0;
    do {
        buf[--n] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v != 0);
    buf[--n] = 'x';
    buf[--n] = '0';
    put(buf + n);
}

static void on_abort(int sig) {
    (void)sig;
    if (probing) {
        probing = 0;
        aborts_seen++;
        siglongjmp(probe_env, 1);
    }
    put("badptr: abort outside a probe (the allocator refused one of the program's own calls)\n");
    _exit(1);
}

static void on_fault(int sig) {
    put(sig == SIGSEGV ? "badptr: SIGSEGV" : "badptr: SIGBUS");
    if (probing) {
        put(probe_op ? " in malloc_usable_size(" : " in free(");
        put_hex(probe_ptr);
        put(") of kind ");
        put(kind_names[probe_kind]);
    } else {
        put(" outside a probe");
    }
    put("\n");
    _exit(1);
}

static unsigned char pattern(unsigned tag, size_t k) {
    return (unsigned char)(tag * 131 + k * 7 + 0x5b);
}

/* A live block is written at its first and last 64 bytes (and checked there before its free). */
static void new_block(int i) {
    size_t size;
    uint64_t r = below(1000);
    if (r < 700) {
        size = 8 + below(1017);
    } else if (r < 900) {
        size = 1025 + below((size_t)1 << 20);
    } else if (r < 990) {
        size = ((size_t)1 << 20) + below((size_t)7 << 20);
    } else {
        size = ((size_t)8 << 20) + below((size_t)56 << 20);
    }
    char *p = malloc(size);
    if (p == NULL) {
        put("badptr: malloc failed\n");
        _exit(1);
    }
    static unsigned tags;
    unsigned tag = ++tags;
    size_t head = size < 128 ? size / 2 : 64;
    for (size_t k = 0; k < head; k++) {
        p[k] = (char)pattern(tag, k);
        p[size - 1 - k] = (char)pattern(tag, k + 64);
    }
    live[i].p = p;
    live[i].size = size;
    live[i].usable = malloc_usable_size(p);
    live[i].tag = tag;
}

static void replace_block(int i) {
    char *p = live[i].p;
    size_t size = live[i].size;
    size_t head = size < 128 ? size / 2 : 64;
    for (size_t k = 0; k < head; k++) {
        if ((unsigned char)p[k] != pattern(live[i].tag, k) || (unsigned char)p[size - 1 - k] != pattern(live[i].tag, k + 64)) {
            printf("badptr: live block %p (%zu bytes) was changed\n", (void *)p, size);
            block_errors++;
            break;
        }
    }
    freed_start[nfreed % FREED] = (uintptr_t)p;
    free(p);
    freed_size[nfreed % FREED] = live[i].usable;
    nfreed++;
    new_block(i);
}

/* What the program knows of `a`, for the report of a call that returned. */
static void describe(uintptr_t a) {
    for (int i = 0; i < LIVE; i++) {
        uintptr_t p = (uintptr_t)live[i].p;
        if (a >= p - 4096 && a < p + 4 * live[i].usable) {
            printf("badptr:   %+ld bytes from live block %p (%zu bytes asked, %zu usable)\n", (long)(a - p),
                   (void *)p, live[i].size, live[i].usable);
        }
    }
    unsigned n = nfreed < FREED ? nfreed : FREED;
    for (unsigned f = 0; f < n; f++) {
        if (a >= freed_start[f] && a < freed_start[f] + freed_size[f] + 64) {
            printf("badptr:   %+ld bytes from freed block %#lx (%zu usable)\n", (long)(a - freed_start[f]),
                   (unsigned long)freed_start[f], freed_size[f]);
        }
    }
    printf("badptr:   chunk offset %#lx\n", (unsigned long)(a & (CHUNK - 1)));
}

/* Whether `a` lies in a 4 MiB chunk that none of the program's live or recently freed blocks
 * touches. Such a chunk may be another thread's (the main thread's, or the C library's own
 * allocations made there), whose live blocks the program does not know: a probe derived from one
 * of its blocks that lands on one of those (a large block's "past" pointer reaches the chunks
 * after its run) is a valid free, which the allocator must obey. */
static int is_foreign_chunk(uintptr_t a) {
    uintptr_t chunk = a & ~(CHUNK - 1);
    for (int i = 0; i < LIVE; i++) {
        uintptr_t p = (uintptr_t)live[i].p;
        if (p - 64 < chunk + CHUNK && p + live[i].usable > chunk) {
            return 0;
        }
    }
    unsigned n = nfreed < FREED ? nfreed : FREED;
    for (unsigned f = 0; f < n; f++) {
        if (freed_start[f] - 64 < chunk + CHUNK && freed_start[f] + freed_size[f] > chunk) {
            return 0;
        }
    }
    return 1;
}

/* The kinds of candidate made from one of the program's blocks. */
static int is_derived(enum kind k) {
    return k == INTERIOR || k == PAST || k == BEFORE || k == CHUNKK || k == FREEDK;
}

static int is_live_start(uintptr_t a) {
    for (int i = 0; i < LIVE; i++) {
        if ((uintptr_t)live[i].p == a) {
            return 1;
        }
    }
    return 0;
}

/* An offset aligned like block starts often are (16 or 8), or not at all. */
static uintptr_t offset_below(uintptr_t n) {
    uintptr_t off = below(n);
    uint64_t r = below(4);
    return r < 2 ? off & ~(uintptr_t)15 : r == 2 ? off & ~(uintptr_t)7 : off;
}

static uintptr_t candidate(enum kind k) {
    int i = (int)below(LIVE);
    uintptr_t p = (uintptr_t)live[i].p, usable = live[i].usable;
    int large = usable > ((size_t)1 << 20);
    switch (k) {
    case INTERIOR:
        return p + 1 + below(usable - 1);
    case PAST:
        return p + usable * (1 + below(3)) + (below(4) == 0 ? offset_below(64) : 0);
    case BEFORE:
        return p - 1 - below(large ? 4096 : 64);
    case CHUNKK: {
        uintptr_t chunk = p & ~(CHUNK - 1);
        switch (below(5)) {
        case 0:
            return chunk + offset_below((uintptr_t)128 << 10); /* header and bitmaps */
        case 1:
            return chunk - CHUNK + offset_below(2 * CHUNK + CHUNK);
        case 2:
            if (large) {
                /* The run's base and the starts of its chunks: registered, never a block. */
                uintptr_t base = (p - 64) & ~(CHUNK - 1);
                return base + CHUNK * below((usable + 64) / CHUNK + 1) + (below(2) ? below(64) : 0);
            }
            return chunk;
        default:
            return chunk + offset_below(CHUNK);
        }
    }
    case FREEDK: {
        if (nfreed == 0) {
            return p + 1;
        }
        unsigned f = (unsigned)below(nfreed < FREED ? nfreed : FREED);
        uintptr_t start = freed_start[f];
        return below(2) ? start : start + offset_below(freed_size[f] + 64);
    }
    case STACK: {
        volatile char here[64];
        here[0] = 1;
        return (uintptr_t)here + offset_below(4096) - 2048;
    }
    case GLOBAL:
        if (below(8) == 0) {
            return (uintptr_t)&candidate + below(4);
        }
        return (uintptr_t)global_array + offset_below(sizeof global_array + 4096) - 2048;
    case MMAPPED:
        return (uintptr_t)mapped + offset_below((uintptr_t)MAPPED_PAGES * 4096);
    case RANDOM:
        return (uintptr_t)next_random();
    case LOW:
        return 1 + below(65535);
    case KERNEL:
        return (uintptr_t)0xffff800000000000ULL + (uintptr_t)(next_random() >> 17);
    case NULLK:
    case KINDS:
        break;
    }
    return 0;
}

/* One probe: free (op 0) or malloc_usable_size (op 1) of `a`. Returns 1 if the call returned. */
static int probe(int op, uintptr_t a, enum kind k) {
    probe_op = op;
    probe_ptr = a;
    probe_kind = k;
    calls[k]++;
    if (sigsetjmp(probe_env, 1) == 0) {
        probing = 1;
        if (op == 0) {
            free((void *)a);
        } else {
            volatile size_t n = malloc_usable_size((void *)a);
            (void)n;
        }
        probing = 0;
        returned[k]++;
        return 1;
    }
    jumps++;
    aborted[k]++;
    return 0;
}

/* Prints the counts; returns whether they are what they must be. */
static int report(void) {
    long total = 0, total_aborted = 0, total_returned = 0;
    for (int k = 0; k < KINDS; k++) {
        if (calls[k] != 0) {
            printf("badptr: %-8s %8ld calls, %8ld aborted, %6ld returned\n", kind_names[k], calls[k], aborted[k],
                   returned[k]);
        }
        total += calls[k];
        total_aborted += aborted[k];
        total_returned += returned[k];
    }
    printf("badptr: %ld calls: %ld aborted (%ld SIGABRTs caught), %ld returned (%ld on NULL); skipped %ld live "
           "starts and %ld probes in chunks without blocks of ours\n",
           total, total_aborted, aborts_seen, total_returned, returned[NULLK], skipped, skipped_foreign);
    int ok = 1;
    if (aborts_seen != jumps || total_aborted + total_returned != total) {
        printf("badptr: FAILED: %ld SIGABRTs for %ld calls that did not return\n", aborts_seen, jumps);
        ok = 0;
    }
    if (bad_returns != 0) {
        printf("badptr: FAILED: %ld calls on bad pointers returned\n", bad_returns);
        ok = 0;
    }
    if (block_errors != 0) {
        printf("badptr: FAILED: %ld live blocks changed\n", block_errors);
        ok = 0;
    }
    if (aborts_seen == 0) {
        printf("badptr: FAILED: no call was refused\n");
        ok = 0;
    }
    return ok;
}

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < LIVE; i++) {
        new_block(i);
    }
    int nkinds = 0;
    enum kind list[KINDS];
    for (int k = 0; k < KINDS; k++) {
        if (enabled[k]) {
            list[nkinds++] = (enum kind)k;
        }
    }
    for (long it = 0; it < iterations; it++) {
        if (it % 16 == 15) {
            replace_block((int)below(LIVE));
        }
        enum kind k = list[below((uint64_t)nkinds)];
        uintptr_t a = candidate(k);
        if (k != NULLK && (a == 0 || is_live_start(a))) {
            skipped++;
            continue;
        }
        if (is_derived(k) && is_foreign_chunk(a)) {
            skipped_foreign++;
            continue;
        }
        int op = (int)below(2);
        if (probe(op, a, k) && k != NULLK) {
            bad_returns++;
            if (bad_returns <= 10 || op == 0) {
                printf("badptr: %s(%p) of kind %s returned\n", op ? "malloc_usable_size" : "free", (void *)a,
                       kind_names[k]);
                describe(a);
            }
            if (op == 0) {
                /* The heap may be corrupt now: report and leave without freeing anything. */
                printf("badptr: a bad free was obeyed; stopping after %ld iterations\n", it + 1);
                report();
                fflush(stdout);
                _exit(1);
            }
        }
    }
    for (int i = 0; i < LIVE; i++) {
        replace_block(i);
        free(live[i].p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        iterations = atol(argv[1]);
    }
    if (argc > 2) {
        seed = strtoull(argv[2], NULL, 0);
    }
    for (int k = 0; k < KINDS; k++) {
        enabled[k] = argc <= 3;
    }
    if (argc > 3) {
        char *list = argv[3], *save = NULL;
        for (char *w = strtok_r(list, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
            int found = 0;
            for (int k = 0; k < KINDS; k++) {
                if (strcmp(w, kind_names[k]) == 0) {
                    enabled[k] = found = 1;
                }
            }
            if (!found) {
                fprintf(stderr, "badptr: unknown kind %s\n", w);
                return 2;
            }
        }
    }
    if (iterations <= 0 || argc > 4) {
        fprintf(stderr, "usage: badptr [ITERATIONS [SEED [KINDS]]]\n");
        return 2;
    }
    rng_state = seed;
    setvbuf(stdout, NULL, _IOLBF, 0);
    mapped = mmap(NULL, MAPPED_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) {
        perror("badptr: mmap");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_abort;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGABRT, &sa, NULL);
    sa.sa_handler = on_fault;
    sa.sa_flags = 0;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);

    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0) {
        fprintf(stderr, "badptr: pthread failed\n");
        return 1;
    }

    if (!report()) {
        return 1;
    }
    printf("badptr: ok\n");
    return 0;
}
