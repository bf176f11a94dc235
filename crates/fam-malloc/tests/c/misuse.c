/*
 * misuse.c: one heap misuse per run, chosen by the argument. Under fam-alloc each one must be
 * reported on stderr (`fam-alloc: OP(0x...): ...`) and abort the process (SIGABRT); the program
 * exits with 0 only if the misuse went unnoticed.
 *
 * Usage: misuse MODE, with MODE one of
 *   double-free          free a 64-byte block twice
 *   double-free-large    free an 8 MiB block twice
 *   free-stack           free the address of a local variable
 *   free-global          free the address of a global array
 *   free-interior        free a pointer 16 bytes into a block
 *   free-interior-large  free a pointer 4 KiB into an 8 MiB block
 *   realloc-foreign      realloc the address of a global array
 *   realloc-freed        realloc a block that was freed
 *   usable-size-foreign  malloc_usable_size of the address of a local variable
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char global_array[64];

/* Hides where a pointer comes from, so the compiler neither warns nor optimises the misuse away. */
__attribute__((noinline)) static void *launder(void *p) {
    void *volatile q = p;
    return q;
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
        char *p = malloc(64);
        memset(p, 2, 64);
        free(launder(p));
        free(launder(p));
    } else if (strcmp(mode, "double-free-large") == 0) {
        char *p = malloc(8 << 20);
        memset(p, 2, 4096);
        free(launder(p));
        free(launder(p));
    } else if (strcmp(mode, "free-stack") == 0) {
        free(launder(local));
    } else if (strcmp(mode, "free-global") == 0) {
        free(launder(global_array));
    } else if (strcmp(mode, "free-interior") == 0) {
        char *p = malloc(64);
        free(launder(p + 16));
    } else if (strcmp(mode, "free-interior-large") == 0) {
        char *p = malloc(8 << 20);
        free(launder(p + 4096));
    } else if (strcmp(mode, "realloc-foreign") == 0) {
        void *q = realloc(launder(global_array), 128);
        printf("%p\n", q);
    } else if (strcmp(mode, "realloc-freed") == 0) {
        char *p = malloc(100);
        free(launder(p));
        void *q = realloc(launder(p), 200);
        printf("%p\n", q);
    } else if (strcmp(mode, "usable-size-foreign") == 0) {
        printf("%zu\n", malloc_usable_size(launder(local)));
    } else {
        fprintf(stderr, "misuse: unknown mode %s\n", mode);
        return 2;
    }
    printf("misuse %s went unnoticed\n", mode);
    return 0;
}
