/*
 * fam_malloc.h: the C interface of fam-alloc (libfam_malloc.so / libfam_malloc.a).
 *
 * The library replaces the whole malloc family of the C library. Its standard functions have the
 * standard prototypes, which <stdlib.h> and <malloc.h> declare; this header includes them and
 * adds the library's own functions. Preload the shared library, or link the static one:
 *
 *     LD_PRELOAD=/path/to/libfam_malloc.so ./program
 *     cc program.c -I include -L target/release -l:libfam_malloc.a -lpthread -ldl -lm
 *
 * What the standard functions do here (glibc's behaviour unless said otherwise):
 *
 *   malloc(n)              16-byte aligned when n rounded up to 8 is a multiple of 16, else
 *                          8-byte aligned (enough for an object of that size: 24, 40 and 56
 *                          bytes get blocks of that size). malloc(0) returns a unique minimal
 *                          block. NULL with errno = ENOMEM when memory
 *                          is exhausted or n cannot be met (a size near SIZE_MAX fails, it never
 *                          wraps into a small block).
 *   calloc(n, size)        zeroed; NULL/ENOMEM when n * size overflows.
 *   realloc(p, n)          keeps the content; in place when the block already fits. realloc(NULL,
 *                          n) is malloc(n); realloc(p, 0) frees p and returns NULL. On failure
 *                          NULL/ENOMEM and p is left as it was.
 *   reallocarray(p, n, s)  realloc(p, n * s), NULL/ENOMEM when the product overflows.
 *   free(p)                NULL is ignored.
 *   posix_memalign(&p, a, n)  returns EINVAL (errno untouched) unless a is a power of two and a
 *                          multiple of sizeof(void *); ENOMEM when memory is exhausted.
 *   aligned_alloc(a, n)    a must be a power of two (glibc 2.38's rule), else NULL/EINVAL.
 *   memalign(a, n)         a is rounded up to the next power of two; NULL/EINVAL if none exists.
 *   valloc(n)              page aligned.
 *   pvalloc(n)             page aligned, n rounded up to a whole number of pages (at least one).
 *   malloc_usable_size(p)  at least the size asked for; 0 for NULL.
 *   malloc_trim(pad)       returns the calling thread's cached blocks to the pool and gives empty
 *                          memory back to the OS; 1 if any was given back, else 0. pad is ignored.
 *   mallopt(param, value)  1 for the parameters glibc defines (M_MXFAST, M_TRIM_THRESHOLD,
 *                          M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX, M_CHECK_ACTION, M_PERTURB,
 *                          M_ARENA_TEST, M_ARENA_MAX), which are accepted and ignored; 0 for any
 *                          other parameter.
 *   mallinfo(), mallinfo2()  the allocator's figures in glibc's structures (int fields saturate):
 *                          arena     bytes of committed chunks the pool lists (a lower bound)
 *                          ordblks   empty 4 MiB chunks waiting for reuse
 *                          smblks    chunks with free blocks (partially used)
 *                          fsmblks   bytes cached in the calling thread's buckets
 *                          fordblks  free committed bytes: empty chunks' memory + fsmblks
 *                          keepcost  bytes malloc_trim would give back now
 *                          hblks, hblkhd, usmblks, uordblks  0 (not counted)
 *
 * Misuse is caught and aborts: free, realloc or malloc_usable_size of a pointer the allocator
 * does not own, of a pointer into the middle of a block, or of a block already free prints
 *     fam-alloc: free(0x...): <what is wrong>
 * on stderr and raises SIGABRT.
 */
#ifndef FAM_MALLOC_H
#define FAM_MALLOC_H

#include <stddef.h>
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Returns the calling thread's cached blocks to the central pool, decommits every empty chunk
 * and unmaps the cached large blocks now (the allocator does this by itself after a delay).
 * Returns the number of 4 MiB chunks given back to the OS.
 */
size_t fam_trim(void);

/*
 * The allocator's options, by name (the environment sets them at start-up; these change them
 * at any time, taking effect at the next pool operation):
 *   "purge_delay"       FAM_PURGE_DELAY       100  ms freed memory keeps its pages; 0 at once, -1 never
 *   "retain_empty"      FAM_RETAIN_EMPTY      64   empty 4 MiB chunks kept committed
 *   "background_purge"  FAM_BACKGROUND_PURGE  0    1: a thread gives memory back while the program is idle
 * Both return 0, or -1 with errno EINVAL for an unknown name, a value out of range or a null
 * pointer (nothing changes then).
 */
int fam_option_set(const char *name, long value);
int fam_option_get(const char *name, long *value);

/* The library's version, e.g. "0.1.0": a static string, never to be freed. */
const char *fam_version(void);

/*
 * The shared global heap: num_chunks chunks of 4 MiB, preallocated in one MAP_SHARED region that
 * forked children inherit. Call once, before fork(). Returns 0, EEXIST (already mapped), EINVAL
 * (0 chunks) or ENOMEM. It is separate from malloc, which stays private.
 *
 * WARNING: blocks of this heap are shared. After fork(), a child's writes to them reach the
 * parent (and the other children). Put only data meant to be shared in it.
 */
int fam_init_global_allocator(size_t num_chunks);

/* malloc, free and realloc on the shared global heap (16-byte aligned; NULL and errno ENOMEM
 * when it is full or not mapped; fam_release of a pointer that is not a live block aborts). */
void *fam_alloc(size_t size);
void fam_release(void *ptr);
void *fam_resize(void *ptr, size_t size);

/*
 * Writes the allocator's statistics (the report FAM_STATS writes at exit) to a file descriptor,
 * or to stderr. format: NULL or "table" (for people), "bmalloc" (V/B/H/S lines) or "json".
 * Returns 0, or EINVAL for an unknown format. Allocates nothing.
 */
int fam_write_stats(int fd, const char *format);
int fam_print_stats(const char *format);

#ifdef __cplusplus
}
#endif

#endif /* FAM_MALLOC_H */
