/*
 * stress.c: a multi-threaded allocator stress test in the shape of mimalloc's test-stress.
 *
 * THREADS threads allocate objects of mostly small and some large sizes, keep some, free some
 * and swap others with a shared array of slots (atomic exchange), so that objects are freed by
 * threads other than the one that allocated them. Every object carries a content pattern that is
 * checked before it is freed or resized; calloc'ed memory is checked to be zero and aligned
 * requests to be aligned. The threads exit at the end of each round and new ones are created
 * for the next, while objects left in the slots survive from round to round.
 *
 * In each round thread 0 also forks while the others keep allocating: the child checks and
 * frees the objects thread 0 holds, runs a small workload of its own and exits; the parent waits
 * for it. That exercises the allocator's fork handling from a program with live threads.
 *
 * Usage: stress [rounds] [scale]. Prints one summary line (the same under any correct
 * allocator) and exits with 0, or reports the errors on stderr and exits with 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 16
#define TRANSFERS 1000

static const uintptr_t cookie = (uintptr_t)0xbf58476d1ce4e5b9ULL;

static int rounds = 10;
static int scale = 10;
static _Atomic(uintptr_t *) transfer[TRANSFERS];
static atomic_long errors;
static atomic_long forks;

/* A per-thread random generator (splitmix64): deterministic for a given thread and round. */
typedef struct {
    uint64_t state;
} rng_t;

static uint64_t pick(rng_t *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int chance(unsigned percent, rng_t *r) {
    return pick(r) % 100 < percent;
}

static void error(const char *what, const void *p) {
    if (atomic_fetch_add(&errors, 1) < 20) {
        fprintf(stderr, "stress: %s (%p)\n", what, p);
    }
}

/* Word i of an object of `items` words: word 0 holds the length, the others a fixed pattern. */
static uintptr_t pattern(size_t i, size_t items) {
    return i == 0 ? (items ^ cookie) : ((uintptr_t)i * (uintptr_t)0x9e3779b97f4a7c15ULL) ^ cookie;
}

static void fill(uintptr_t *p, size_t from, size_t items) {
    for (size_t i = from; i < items; i++) {
        p[i] = pattern(i, items);
    }
    p[0] = pattern(0, items);
}

/* Checks an object's pattern and returns its length in words (0 if it is damaged). */
static size_t check(uintptr_t *p) {
    size_t items = p[0] ^ cookie;
    if (items == 0 || items > ((size_t)1 << 28)) {
        error("damaged length word", p);
        return 0;
    }
    for (size_t i = 1; i < items; i++) {
        if (p[i] != pattern(i, items)) {
            error("damaged content", p);
            return 0;
        }
    }
    if (malloc_usable_size(p) < items * sizeof(uintptr_t)) {
        error("usable size below the size asked for", p);
    }
    return items;
}

/* What malloc owes a request of `bytes`: the alignment an object of that size needs, which divides its
   size: the largest power of two dividing the size rounded up to 8, at most 16. */
static size_t c_align(size_t bytes) {
    size_t rounded = (bytes + 7) & ~(size_t)7;
    size_t low = rounded & -rounded;
    return rounded == 0 ? 8 : (low > 16 ? 16 : low);
}

static void check_align(const void *p, size_t align) {
    if ((uintptr_t)p % align != 0) {
        error("misaligned block", p);
    }
}

static uintptr_t *alloc_items(size_t items, rng_t *r) {
    if (chance(1, r)) {
        items *= chance(10, r) ? 4096 : 100; /* some large objects: up to a few MiB */
    }
    if (items == 40) {
        items++; /* as in mimalloc's test: the size glibc's threads use for their stacks' TLS */
    }
    size_t bytes = items * sizeof(uintptr_t);
    uintptr_t *p = NULL;
    unsigned how = pick(r) % 16;
    switch (how) {
    case 10:
    case 11:
        p = calloc(items, sizeof(uintptr_t));
        if (p != NULL) {
            for (size_t i = 0; i < items; i++) {
                if (p[i] != 0) {
                    error("calloc memory not zero", p);
                    break;
                }
            }
        }
        break;
    case 12:
        if (posix_memalign((void **)&p, 64, bytes) != 0) {
            p = NULL;
        }
        check_align(p, 64);
        break;
    case 13:
        p = aligned_alloc(32, bytes);
        check_align(p, 32);
        break;
    case 14:
        p = memalign(128, bytes);
        check_align(p, 128);
        break;
    case 15: {
        /* grow from a smaller block */
        uintptr_t *q = malloc(sizeof(uintptr_t));
        if (q == NULL) {
            break;
        }
        q[0] = 42;
        p = realloc(q, bytes);
        if (p == NULL) {
            free(q);
        } else if (p[0] != 42) {
            error("realloc lost the content", p);
        }
        break;
    }
    default:
        p = malloc(bytes);
        break;
    }
    if (p == NULL) {
        error("allocation failed", NULL);
        exit(1);
    }
    check_align(p, c_align(bytes));
    fill(p, 1, items);
    return p;
}

static void free_items(uintptr_t *p) {
    if (p != NULL) {
        check(p);
        free(p);
    }
}

/* Resizes an object to a new length chosen by `random`, checking the content before and after. */
static uintptr_t *resize_items(uintptr_t *p, uint64_t random) {
    size_t items = check(p);
    if (items == 0) {
        return p;
    }
    size_t new_items = 1 + random % (items * 2 + 8);
    uintptr_t *q = realloc(p, new_items * sizeof(uintptr_t));
    if (q == NULL) {
        error("realloc failed", p);
        return p;
    }
    check_align(q, c_align(new_items * sizeof(uintptr_t)));
    size_t keep = items < new_items ? items : new_items;
    for (size_t i = 1; i < keep; i++) {
        if (q[i] != pattern(i, items)) {
            error("realloc damaged the content", q);
            break;
        }
    }
    fill(q, keep, new_items);
    return q;
}

/* A workload run in a forked child: allocate, check, resize and free, on one thread. */
static void child_workload(void) {
    rng_t r = {12345};
    uintptr_t *live[256] = {0};
    for (int i = 0; i < 20000; i++) {
        size_t slot = pick(&r) % 256;
        if (live[slot] != NULL && chance(20, &r)) {
            live[slot] = resize_items(live[slot], pick(&r));
            continue;
        }
        free_items(live[slot]);
        live[slot] = alloc_items((size_t)1 << (pick(&r) % 8), &r);
    }
    for (int i = 0; i < 256; i++) {
        free_items(live[i]);
    }
    malloc_trim(0);
}

typedef struct {
    int tid;
    int round;
} job_t;

static void *stress(void *arg) {
    const job_t *job = arg;
    rng_t r = {(uint64_t)job->round * 1000003u + (uint64_t)job->tid};
    const size_t max_item_shift = 5;
    const size_t max_item_retained_shift = max_item_shift + 2;
    size_t allocs = 100 * (size_t)scale * (size_t)(job->tid % 8 + 1);
    size_t retain = allocs / 2;
    const size_t fork_at = allocs / 2;
    uintptr_t **data = NULL;
    size_t data_size = 0, data_top = 0;
    uintptr_t **retained = calloc(retain, sizeof(uintptr_t *));
    size_t retain_top = 0;
    if (retained == NULL) {
        error("calloc of the retained array failed", NULL);
        return NULL;
    }
    while (allocs > 0 || retain > 0) {
        if (retain == 0 || (chance(50, &r) && allocs > 0)) {
            allocs--;
            if (data_top >= data_size) {
                data_size += 1000;
                uintptr_t **d = realloc(data, data_size * sizeof(uintptr_t *));
                if (d == NULL) {
                    error("realloc of the data array failed", data);
                    exit(1);
                }
                data = d;
            }
            data[data_top++] = alloc_items((size_t)1 << (pick(&r) % max_item_shift), &r);
        } else {
            retained[retain_top++] =
                alloc_items((size_t)1 << (pick(&r) % max_item_retained_shift), &r);
            retain--;
        }
        if (chance(66, &r) && data_top > 0) {
            size_t idx = pick(&r) % data_top;
            free_items(data[idx]);
            data[idx] = NULL;
        }
        if (chance(5, &r) && data_top > 0) {
            /* Draw the numbers whether or not the slot holds an object, so that the sequence
               does not depend on what other threads put into the transfer slots. */
            size_t idx = pick(&r) % data_top;
            uint64_t random = pick(&r);
            if (data[idx] != NULL) {
                data[idx] = resize_items(data[idx], random);
            }
        }
        if (chance(25, &r) && data_top > 0) {
            size_t data_idx = pick(&r) % data_top;
            size_t transfer_idx = pick(&r) % TRANSFERS;
            data[data_idx] = atomic_exchange(&transfer[transfer_idx], data[data_idx]);
        }
        if (job->tid == 0 && allocs == fork_at) {
            allocs--; /* fork once per round */
            pid_t pid = fork();
            if (pid == 0) {
                for (size_t i = 0; i < retain_top; i++) {
                    free_items(retained[i]);
                }
                for (size_t i = 0; i < data_top; i++) {
                    free_items(data[i]);
                }
                free(retained);
                free(data);
                child_workload();
                _exit(atomic_load(&errors) == 0 ? 0 : 1);
            } else if (pid < 0) {
                error("fork failed", NULL);
            } else {
                int status = 0;
                if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                    WEXITSTATUS(status) != 0) {
                    error("forked child failed", NULL);
                }
                atomic_fetch_add(&forks, 1);
            }
        }
    }
    for (size_t i = 0; i < retain_top; i++) {
        free_items(retained[i]);
    }
    for (size_t i = 0; i < data_top; i++) {
        free_items(data[i]);
    }
    free(retained);
    free(data);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        rounds = atoi(argv[1]);
    }
    if (argc > 2) {
        scale = atoi(argv[2]);
    }
    if (rounds < 1 || scale < 1) {
        fprintf(stderr, "usage: stress [rounds >= 1] [scale >= 1]\n");
        return 2;
    }
    rng_t r = {42};
    for (int round = 0; round < rounds; round++) {
        pthread_t threads[THREADS];
        job_t jobs[THREADS];
        for (int t = 0; t < THREADS; t++) {
            jobs[t] = (job_t){t, round};
            if (pthread_create(&threads[t], NULL, stress, &jobs[t]) != 0) {
                error("pthread_create failed", NULL);
                return 1;
            }
        }
        for (int t = 0; t < THREADS; t++) {
            pthread_join(threads[t], NULL);
        }
        /* Free half of the objects left in the slots (all of them after the last round). */
        for (int i = 0; i < TRANSFERS; i++) {
            if (chance(50, &r) || round + 1 == rounds) {
                free_items(atomic_exchange(&transfer[i], NULL));
            }
        }
    }
    long errs = atomic_load(&errors);
    if (errs != 0) {
        fprintf(stderr, "stress: %ld errors\n", errs);
        return 1;
    }
    printf("stress: %d threads, %d rounds, scale %d, %ld forks: ok\n", THREADS, rounds, scale,
           atomic_load(&forks));
    return 0;
}
