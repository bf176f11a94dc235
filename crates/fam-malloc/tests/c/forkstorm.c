/*
 * forkstorm.c: fork while other threads are born, allocate and die, and never hang the child.
 *
 * Two threads start and join short-lived threads without pause; each short-lived thread
 * allocates 64 blocks of mixed sizes, writes them and frees them, so threads register with the
 * allocator and leave it all the time. Meanwhile the main thread forks N times, one child after
 * the other. Each child sets alarm(10), starts one thread that allocates and frees 64 blocks,
 * joins it, allocates and frees a few blocks itself and calls exit(0), or _exit(0) for every
 * second child (exit runs the atexit handlers, and with FAM_STATS set the allocator's report).
 * The parent reaps each child and counts those killed by SIGALRM (hung) and those that ended in
 * any other way than status 0 (failed). A malloc that returns NULL (in a child or not) is
 * reported on stderr and ends that process with status 4.
 *
 * Usage: forkstorm [N [hold]], N = 10000 by default. Prints `forks N hung H failed F` and exits
 * with 0 when H and F are 0, else 1. With `hold` the children set no alarm; the parent waits
 * 10 s for each, and when one is not done by then it prints its pid and exits with 1, leaving
 * the child stuck (for `gdb -p PID -batch -ex 'thread apply all bt'`; kill it afterwards).
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

static atomic_int stop;
static int hold;

static void churn(unsigned salt) {
    void *b[64];
    for (unsigned i = 0; i < 64; i++) {
        size_t n = 8 + ((i * 2654435761u + salt) % 3000);
        if (i % 16 == 0) {
            n = 20000 + i * 1000;
        }
        b[i] = malloc(n);
        if (b[i] == NULL) {
            char msg[96];
            int len = snprintf(msg, sizeof msg, "forkstorm: malloc(%zu) returned NULL (errno %d) in pid %d\n", n,
                               errno, (int)getpid());
            if (write(2, msg, (size_t)len) < 0) {
                _exit(5);
            }
            _exit(4);
        }
        memset(b[i], (int)i, n < 64 ? n : 64);
    }
    for (unsigned i = 0; i < 64; i++) {
        free(b[i]);
    }
}

static void *short_lived(void *arg) {
    churn((unsigned)(size_t)arg);
    return NULL;
}

static void *spawner(void *arg) {
    unsigned salt = (unsigned)(size_t)arg;
    while (!atomic_load(&stop)) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, (void *)(size_t)salt++) == 0) {
            pthread_join(t, NULL);
        }
    }
    return NULL;
}

static void child(long i) {
    if (!hold) {
        alarm(10);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, short_lived, (void *)(size_t)i) != 0) {
        _exit(3);
    }
    pthread_join(t, NULL);
    churn((unsigned)i * 7);
    if (i % 2 == 0) {
        exit(0);
    }
    _exit(0);
}

/* Waits for `pid`; with `hold`, gives up after 10 s and leaves the child for a debugger. */
static int reap(pid_t pid, int *status) {
    if (!hold) {
        return waitpid(pid, status, 0) == pid;
    }
    for (int tries = 0; tries < 10000; tries++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return 1;
        }
        if (r < 0) {
            return 0;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    printf("forkstorm: child %d is not done after 10 s; left running for a debugger\n", (int)pid);
    fflush(stdout);
    _exit(1);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000;
    hold = argc > 2 && strcmp(argv[2], "hold") == 0;
    if (n <= 0) {
        fprintf(stderr, "usage: forkstorm [N [hold]]\n");
        return 2;
    }
    pthread_t spawners[2];
    for (int s = 0; s < 2; s++) {
        if (pthread_create(&spawners[s], NULL, spawner, (void *)(size_t)(s * 1000003)) != 0) {
            fprintf(stderr, "forkstorm: pthread_create failed\n");
            return 1;
        }
    }
    long hung = 0, failed = 0;
    for (long i = 0; i < n; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("forkstorm: fork");
            failed++;
            continue;
        }
        if (pid == 0) {
            child(i);
        }
        int status = 0;
        if (!reap(pid, &status)) {
            perror("forkstorm: waitpid");
            failed++;
        } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
            hung++;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (failed < 5) {
                fprintf(stderr, "forkstorm: child %ld: %s %d\n", i, WIFSIGNALED(status) ? "signal" : "status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            }
            failed++;
        }
    }
    atomic_store(&stop, 1);
    for (int s = 0; s < 2; s++) {
        pthread_join(spawners[s], NULL);
    }
    printf("forks %ld hung %ld failed %ld\n", n, hung, failed);
    return hung == 0 && failed == 0 ? 0 : 1;
}
