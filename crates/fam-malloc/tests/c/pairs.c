/* The C fast path, for instruction counts: REPS times, malloc LIVE blocks of SIZE bytes, then free
 * them in the same order. Run under callgrind at two REPS and divide the difference by the extra
 * pairs (the README gives the commands); the count includes this loop's own few instructions.
 *
 * usage: pairs REPS [LIVE (default 64)] [SIZE (default 32)] */
#include <stdlib.h>

int main(int argc, char **argv) {
    long reps = argc > 1 ? atol(argv[1]) : 1000;
    int live = argc > 2 ? atoi(argv[2]) : 64;
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 32;
    if (live < 1 || live > 4096)
        return 2;
    /* volatile: the compiler must not pair up and drop the calls */
    void *volatile blocks[4096];
    for (long r = 0; r < reps; r++) {
        for (int i = 0; i < live; i++)
            blocks[i] = malloc(size);
        for (int i = 0; i < live; i++)
            free(blocks[i]);
    }
    return 0;
}
