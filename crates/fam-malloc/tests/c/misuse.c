/*
 * misuse.c: one heap misuse per run, chosen by the argument. Under fam-alloc each one must be
 * reported on stderr with one line, `fam-alloc: OP(0xADDR): MESSAGE`, and abort the process
 * (SIGABRT, status 134 in a shell). Just before the bad call the program prints the pointer it
 * is about to pass on stdout (`%p`, flushed), so a caller can check that ADDR names exactly that
 * pointer. The program exits with 0 (after printing `misuse MODE went unnoticed`) only if the
 * misuse was not caught, with 2 on a usage error and with 3 when a block does not lie where
 * the mode expects it (the check cannot be made).
 *
 * fam-alloc has no guard pages and no guard bytes: none of these cases is caught by a fault.
 * Each is caught because the allocator asks its own chunk registry and chunk headers about the
 * pointer before it reads or writes anything through it.
 *
 * Usage: misuse MODE, with MODE one of
 *   double-free           free a 64-byte block twice
 *   double-free-large     free an 8 MiB block twice
 *   free-stack            free the address of a local variable
 *   free-global           free the address of a global array
 *   free-interior         free a pointer 16 bytes into a 64-byte block
 *   free-interior-large   free a pointer 4 KiB into an 8 MiB block
 *   realloc-foreign       realloc the address of a global array
 *   realloc-freed         realloc a freed 100-byte block to 200 bytes (another class)
 *   realloc-freed-same    realloc a freed 100-byte block to 100 bytes (its own class)
 *   realloc-interior      realloc a pointer 16 bytes into a 100-byte block, to 100 bytes (a
 *                         size the block holds, where a valid pointer stays in place)
 *   usable-size-foreign   malloc_usable_size of the address of a local variable
 *   usable-size-freed     malloc_usable_size of a freed 100-byte block
 *   free-run-base-5m      free the 4 MiB-aligned base of the run under a 5 MiB block (the
 *   free-run-base-9m      pointer malloc's result rounded down to 4 MiB: inside the run, but
 *   free-run-base-17m     never returned by malloc); likewise for 9, 17 and 64 MiB blocks
 *   free-run-base-64m
 *   free-past-small       free p + malloc_usable_size(p) of a 64-byte block: the start of the
 *                         next slot, which the thread's cache holds but never handed out
 *   free-past-large       free p + malloc_usable_size(p) of a 9 MiB block (just past its end)
 *   free-past-chunk       free the address one block past the last block of the chunk that
 *                         holds a 56-byte block (a slot that is never handed out)
 *   free-cached-run       malloc 8 MiB, free it (its run goes to the run cache, decommitted),
 *                         then free a pointer 4 KiB into it
 *   free-mmapped          free the start of a page the program mapped itself
 *   free-one              free((void *)1)
 *   free-kernel           free an address in the kernel's half of the address space
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK ((uintptr_t)4 << 20)
/* Where a chunk's blocks start (its header and bitmaps come first). */
#define SLOT_OFFSET ((uintptr_t)128 << 10)

static char global_array[64];

/* Hides where a pointer comes from, so the compiler neither warns nor optimises the misuse away. */
__attribute__((noinline)) static void *launder(void *p) {
    void *volatile q = p;
    return q;
}

/* Prints the pointer about to be passed to the allocator, then hands it over. */
static void *announce(void *p) {
    printf("%p\n", p);
    fflush(stdout);
    return launder(p);
}

/* A block of `size` bytes whose first page is written (so it is really there). */
static char *block(size_t size) {
    char *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "misuse: malloc(%zu) failed\n", size);
        exit(3);
    }
    memset(p, 0x5a, size < 4096 ? size : 4096);
    return p;
}

static void free_run_base(size_t mib) {
    char *p = block(mib << 20);
    uintptr_t base = (uintptr_t)p & ~(CHUNK - 1);
    if (base == (uintptr_t)p) {
        fprintf(stderr, "misuse: a %zu MiB block starts on a chunk boundary\n", mib);
        exit(3);
    }
    free(announce((void *)base));
}

static void free_past_chunk(void) {
    char *p = block(56);
    size_t size = malloc_usable_size(p);
    uintptr_t chunk = (uintptr_t)p & ~(CHUNK - 1);
    uintptr_t off = (uintptr_t)p - chunk;
    if (size == 0 || off < SLOT_OFFSET || (off - SLOT_OFFSET) % size != 0) {
        fprintf(stderr, "misuse: a %zu-byte block at chunk offset %#lx: not the expected layout\n",
                size, (unsigned long)off);
        exit(3);
    }
    size_t slots = (CHUNK - SLOT_OFFSET) / size;
    uintptr_t past = chunk + SLOT_OFFSET + slots * size;
    if (past + size <= chunk + CHUNK) {
        fprintf(stderr, "misuse: %zu-byte blocks leave a whole slot free at the chunk's end\n", size);
        exit(3);
    }
    free(announce((void *)past));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: misuse MODE\n");
        return 2;
    }
    const char *mode = argv[1];
    char local[64];
    memset(local, 1, sizeof local);
    if (strcmp(mode, "double-free") == 0) {
        char *p = block(64);
        free(launder(p));
        free(announce(p));
    } else if (strcmp(mode, "double-free-large") == 0) {
        char *p = block(8 << 20);
        free(launder(p));
        free(announce(p));
    } else if (strcmp(mode, "free-stack") == 0) {
        free(announce(local));
    } else if (strcmp(mode, "free-global") == 0) {
        free(announce(global_array));
    } else if (strcmp(mode, "free-interior") == 0) {
        char *p = block(64);
        free(announce(p + 16));
    } else if (strcmp(mode, "free-interior-large") == 0) {
        char *p = block(8 << 20);
        free(announce(p + 4096));
    } else if (strcmp(mode, "realloc-foreign") == 0) {
        void *q = realloc(announce(global_array), 128);
        printf("%p\n", q);
    } else if (strcmp(mode, "realloc-freed") == 0) {
        char *p = block(100);
        free(launder(p));
        void *q = realloc(announce(p), 200);
        printf("%p\n", q);
    } else if (strcmp(mode, "realloc-interior") == 0) {
        char *p = block(100);
        void *q = realloc(announce(p + 16), 100);
        printf("%p\n", q);
    } else if (strcmp(mode, "realloc-freed-same") == 0) {
        char *p = block(100);
        free(launder(p));
        void *q = realloc(announce(p), 100);
        printf("%p\n", q);
    } else if (strcmp(mode, "usable-size-foreign") == 0) {
        printf("%zu\n", malloc_usable_size(announce(local)));
    } else if (strcmp(mode, "usable-size-freed") == 0) {
        char *p = block(100);
        free(launder(p));
        printf("%zu\n", malloc_usable_size(announce(p)));
    } else if (strcmp(mode, "free-run-base-5m") == 0) {
        free_run_base(5);
    } else if (strcmp(mode, "free-run-base-9m") == 0) {
        free_run_base(9);
    } else if (strcmp(mode, "free-run-base-17m") == 0) {
        free_run_base(17);
    } else if (strcmp(mode, "free-run-base-64m") == 0) {
        free_run_base(64);
    } else if (strcmp(mode, "free-past-small") == 0) {
        char *p = block(64);
        free(announce(p + malloc_usable_size(p)));
    } else if (strcmp(mode, "free-past-large") == 0) {
        char *p = block(9 << 20);
        free(announce(p + malloc_usable_size(p)));
    } else if (strcmp(mode, "free-past-chunk") == 0) {
        free_past_chunk();
    } else if (strcmp(mode, "free-cached-run") == 0) {
        char *p = block(8 << 20);
        free(launder(p));
        free(announce(p + 4096));
    } else if (strcmp(mode, "free-mmapped") == 0) {
        void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) {
            perror("misuse: mmap");
            return 3;
        }
        free(announce(page));
    } else if (strcmp(mode, "free-one") == 0) {
        free(announce((void *)1));
    } else if (strcmp(mode, "free-kernel") == 0) {
        free(announce((void *)(uintptr_t)0xffff888000001000ULL));
    } else {
        fprintf(stderr, "misuse: unknown mode %s\n", mode);
        return 2;
    }
    printf("misuse %s went unnoticed\n", mode);
    return 0;
}
