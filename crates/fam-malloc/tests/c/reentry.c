/*
 * reentry.c: the allocator's first call on a thread registers the thread (a pthread key value
 * whose destructor flushes the thread's cache at exit). When the program already uses more
 * pthread keys than glibc stores inline (32), setting that value makes glibc allocate: calloc is
 * entered again from inside the allocator. That nested call must be served without recursing
 * and without corrupting the outer one.
 *
 * A constructor takes 40 keys before the program's first allocation, then threads start and
 * allocate; each thread's registration goes through glibc's calloc. Prints one summary line and
 * exits with 0, or names the failure and exits with 1.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 40
#define THREADS 8

static pthread_key_t keys[KEYS];
static int key_failures;

__attribute__((constructor(101))) static void take_keys(void) {
    for (int i = 0; i < KEYS; i++) {
        if (pthread_key_create(&keys[i], NULL) != 0) {
            key_failures++;
        }
    }
}

static void *work(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    /* Use every key, so glibc's second-level key arrays of this thread are in use too. */
    for (int i = 0; i < KEYS; i++) {
        pthread_setspecific(keys[i], (void *)(id + 1));
    }
    unsigned failures = 0;
    char *blocks[1000];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 1000; i++) {
            size_t n = 1 + (size_t)((i * 7919 + round * 104729 + (int)id) % 3000);
            blocks[i] = malloc(n);
            if (blocks[i] == NULL) {
                return (void *)1;
            }
            memset(blocks[i], (int)(i & 0xff), n);
        }
        for (int i = 0; i < 1000; i++) {
            if ((unsigned char)blocks[i][0] != (unsigned char)(i & 0xff)) {
                failures++;
            }
            free(blocks[i]);
        }
    }
    for (int i = 0; i < KEYS; i++) {
        if (pthread_getspecific(keys[i]) != (void *)(id + 1)) {
            failures++;
        }
    }
    return failures == 0 ? NULL : (void *)1;
}

int main(void) {
    if (key_failures != 0) {
        fprintf(stderr, "reentry: pthread_key_create failed %d times\n", key_failures);
        return 1;
    }
    int failed = 0;
    for (int round = 0; round < 5; round++) {
        pthread_t threads[THREADS];
        for (uintptr_t t = 0; t < THREADS; t++) {
            if (pthread_create(&threads[t], NULL, work, (void *)t) != 0) {
                fprintf(stderr, "reentry: pthread_create failed\n");
                return 1;
            }
        }
        for (int t = 0; t < THREADS; t++) {
            void *result = NULL;
            pthread_join(threads[t], &result);
            failed += result != NULL;
        }
    }
    if (failed != 0) {
        fprintf(stderr, "reentry: %d threads saw damaged blocks or keys\n", failed);
        return 1;
    }
    printf("reentry: %d keys, %d threads x 5 rounds: ok\n", KEYS, THREADS);
    return 0;
}
