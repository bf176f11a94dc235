/*
 * stdiofork.c: fork racing stdio, in the shape of glibc's tst-mallocfork2 and fork-deadlock
 * tests. For about a second, all at once:
 *   - two threads fork in a loop; each child calls _exit(0) at once (every second child after
 *     one malloc/free pair; a NULL from that malloc is reported on stderr and the child exits
 *     with 3), and the thread waits for it;
 *   - two threads read lines with getline from a pipe each (through a FILE), freeing the line
 *     buffer now and then so getline allocates and grows it again; each line is checked;
 *   - two threads feed those pipes through FILEs of their own (fputs, fflush), lines of 1 to
 *     6000 bytes;
 *   - one thread calls fflush(NULL) in a loop (the lock of the list of all FILEs, then each
 *     FILE's lock).
 * fork takes the C library's stdio list lock and runs the allocator's fork handlers; an
 * allocator that takes its own locks around fork in another order than the one stdio's paths
 * (which allocate under their locks) take them deadlocks here. A watchdog (alarm(20)) fails the
 * run if it does not finish.
 *
 * Usage: stdiofork [SECONDS [hold]], 1 s by default. Prints `stdiofork: F forks, L lines, N
 * flushes` and `stdiofork: ok`, exits with 0; with 1 on a bad line, a failed child or a hang
 * (`stdiofork: hung` on stdout). With `hold` no watchdog is set, so a hung process can be
 * inspected (`gdb -p PID -batch -ex 'thread apply all bt'`).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"

#define PIPES 2
#define FORKERS 2

/* Stop flags: forkers and the flusher stop first, then the feeders (see main). */
static atomic_int stop, stop_feeding;
static atomic_long forks, lines, flushes, errors;

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "stdiofork: hung: not done after 20 s\n";
    ssize_t r = write(1, msg, sizeof msg - 1);
    (void)r;
    _exit(1);
}

static void *forker(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        long n = atomic_fetch_add(&forks, 1);
        pid_t pid = fork();
        if (pid == 0) {
            if (n % 2 == 1) {
                void *p = malloc(100 + n % 3000);
                if (p == NULL) {
                    child_failed_malloc("stdiofork");
                }
                free(p);
            }
            _exit(0);
        }
        if (pid < 0) {
            atomic_fetch_add(&errors, 1);
            continue;
        }
        int status = 0;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (atomic_fetch_add(&errors, 1) < 5) {
                fprintf(stderr, "stdiofork: child %d: %s %d\n", (int)pid, WIFSIGNALED(status) ? "signal" : "status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            }
        }
    }
    return NULL;
}

/* Line `i` of a pipe: its length and the letter it is made of. */
static size_t line_length(unsigned long i) {
    return 1 + (i * 2654435761u) % (i % 50 == 0 ? 6000 : 300);
}
static char line_letter(unsigned long i) {
    return (char)('a' + i % 26);
}

static void *feeder(void *arg) {
    FILE *w = arg;
    char *buf = malloc(6002);
    for (unsigned long i = 0; !atomic_load(&stop_feeding); i++) {
        size_t n = line_length(i);
        memset(buf, line_letter(i), n);
        buf[n] = '\n';
        buf[n + 1] = 0;
        if (fputs(buf, w) == EOF) {
            atomic_fetch_add(&errors, 1);
            break;
        }
        if (i % 8 == 0) {
            fflush(w);
        }
    }
    free(buf);
    fclose(w);
    return NULL;
}

static void *reader(void *arg) {
    FILE *r = arg;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    for (unsigned long i = 0; (len = getline(&line, &cap, r)) > 0; i++) {
        size_t want = line_length(i);
        int ok = (size_t)len == want + 1 && line[want] == '\n';
        for (size_t k = 0; ok && k < want; k++) {
            ok = line[k] == line_letter(i);
        }
        if (!ok) {
            if (atomic_fetch_add(&errors, 1) < 5) {
                fprintf(stderr, "stdiofork: line %lu: %zd bytes, not %zu of '%c'\n", i, len, want + 1, line_letter(i));
            }
            break;
        }
        atomic_fetch_add(&lines, 1);
        if (i % 16 == 0) {
            free(line);
            line = NULL;
            cap = 0;
        }
    }
    free(line);
    /* Drain what is left, so the feeder never blocks on a full pipe. */
    char sink[4096];
    while (fread(sink, 1, sizeof sink, r) > 0) {
    }
    fclose(r);
    return NULL;
}

static void *flusher(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        fflush(NULL);
        atomic_fetch_add(&flushes, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1;
    int hold = argc > 2 && strcmp(argv[2], "hold") == 0;
    if (seconds <= 0) {
        fprintf(stderr, "usage: stdiofork [SECONDS [hold]]\n");
        return 2;
    }
    if (!hold) {
        signal(SIGALRM, on_alarm);
        alarm(20);
    }
    pthread_t feeders[PIPES], readers[PIPES], forkers[FORKERS], flush;
    for (int i = 0; i < PIPES; i++) {
        int fd[2];
        if (pipe(fd) != 0) {
            perror("stdiofork: pipe");
            return 1;
        }
        FILE *r = fdopen(fd[0], "r"), *w = fdopen(fd[1], "w");
        if (r == NULL || w == NULL) {
            perror("stdiofork: fdopen");
            return 1;
        }
        pthread_create(&readers[i], NULL, reader, r);
        pthread_create(&feeders[i], NULL, feeder, w);
    }
    for (int i = 0; i < FORKERS; i++) {
        pthread_create(&forkers[i], NULL, forker, NULL);
    }
    pthread_create(&flush, NULL, flusher, NULL);

    struct timespec t = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&t, NULL);
    /* The flusher must be gone before a feeder closes its FILE: fclose takes the lock of the
     * list of FILEs, which fflush(NULL) holds while it waits for each FILE's lock, and a reader
     * holds its FILE's lock while it waits in read() for the feeder. */
    atomic_store(&stop, 1);
    for (int i = 0; i < FORKERS; i++) {
        pthread_join(forkers[i], NULL);
    }
    pthread_join(flush, NULL);
    atomic_store(&stop_feeding, 1);
    for (int i = 0; i < PIPES; i++) {
        pthread_join(feeders[i], NULL);
        pthread_join(readers[i], NULL);
    }
    alarm(0);
    printf("stdiofork: %ld forks, %ld lines, %ld flushes\n", atomic_load(&forks), atomic_load(&lines),
           atomic_load(&flushes));
    if (atomic_load(&errors) != 0 || atomic_load(&forks) == 0 || atomic_load(&lines) == 0) {
        printf("stdiofork: FAILED: %ld errors\n", atomic_load(&errors));
        return 1;
    }
    printf("stdiofork: ok\n");
    return 0;
}
