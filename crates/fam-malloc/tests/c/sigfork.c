/*
 * sigfork.c: fork from a signal handler that may have interrupted malloc or free.
 *
 * The main thread allocates, writes, checks and frees blocks of mixed sizes in a loop, and
 * reaps its children there (waitpid with WNOHANG). A second thread sends it SIGUSR1 every
 * millisecond; the handler forks, wherever the main thread was (in the middle of malloc or free
 * often enough). The child either calls _exit(0) at once or does one malloc/free pair first and
 * then _exit(0) (alternately; a NULL from that malloc is reported on stderr and the child exits
 * with 3). The loop must keep going: a watchdog (alarm, re-armed as the loop
 * advances) fails the run when it stalls for 10 s, and every child must exit with status 0.
 *
 * Usage: sigfork [SECONDS], 5 by default. Prints `sigfork: N iterations, F forks, R reaped, C
 * failed` and `sigfork: ok`, exits with 0; with status 1 when a child failed, a block changed or
 * the loop stalled (`sigfork: stalled ...` on stdout).
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

static atomic_int stop;
static volatile sig_atomic_t forks, fork_errors;
static long iterations;
static pthread_t main_thread;

static void say(const char *s) {
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}

static void on_usr1(int sig) {
    (void)sig;
    int saved = errno;
    unsigned n = (unsigned)forks;
    pid_t pid = fork();
    if (pid == 0) {
        if (n % 2 == 1) {
            void *p = malloc(40 + n % 2000);
            if (p == NULL) {
                child_failed_malloc("sigfork");
            }
            memset(p, 1, 40);
            free(p);
        }
        _exit(0);
    }
    if (pid < 0) {
        fork_errors++;
    } else {
        forks++;
    }
    errno = saved;
}

static void on_alarm(int sig) {
    (void)sig;
    say("sigfork: stalled: the loop made no progress for 10 s\n");
    _exit(1);
}

static void *sender(void *arg) {
    (void)arg;
    struct timespec ms = {0, 1000000};
    while (!atomic_load(&stop)) {
        pthread_kill(main_thread, SIGUSR1);
        nanosleep(&ms, NULL);
    }
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long reaped, failed;

static void reap(int flags) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, flags)) > 0) {
        reaped++;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (failed < 5) {
                printf("sigfork: child %d: %s %d\n", (int)pid, WIFSIGNALED(status) ? "signal" : "status",
                       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            }
            failed++;
        }
    }
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    if (seconds <= 0) {
        fprintf(stderr, "usage: sigfork [SECONDS]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    main_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    /* The sender must not take the signal itself. */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, sender, NULL) != 0) {
        fprintf(stderr, "sigfork: pthread_create failed\n");
        return 1;
    }
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);

    enum { N = 64 };
    unsigned char *b[N] = {0};
    size_t n[N] = {0};
    long bad_blocks = 0;
    double end = now() + seconds;
    alarm(10);
    for (unsigned i = 0;; i++) {
        unsigned k = i % N;
        if (b[k] != NULL) {
            for (size_t j = 0; j < n[k]; j += 97) {
                if (b[k][j] != (unsigned char)(k + n[k])) {
                    bad_blocks++;
                    break;
                }
            }
            free(b[k]);
        }
        n[k] = 8 + (i * 2654435761u) % (i % 64 == 0 ? 300000 : 2000);
        b[k] = malloc(n[k]);
        if (b[k] == NULL) {
            printf("sigfork: malloc(%zu) returned NULL\n", n[k]);
            return 1;
        }
        memset(b[k], (int)(unsigned char)(k + n[k]), n[k]);
        iterations++;
        if (i % 256 == 0) {
            reap(WNOHANG);
            alarm(10);
            if (now() > end) {
                break;
            }
        }
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    alarm(0);
    for (unsigned k = 0; k < N; k++) {
        free(b[k]);
    }
    reap(0);
    printf("sigfork: %ld iterations, %d forks, %ld reaped, %ld failed\n", iterations, (int)forks, reaped, failed);
    int ok = 1;
    if (failed != 0 || reaped != forks) {
        printf("sigfork: FAILED: %ld children failed, %ld of %d reaped\n", failed, reaped, (int)forks);
        ok = 0;
    }
    if (bad_blocks != 0) {
        printf("sigfork: FAILED: %ld blocks changed\n", bad_blocks);
        ok = 0;
    }
    if (forks == 0 || iterations == 0) {
        printf("sigfork: FAILED: no progress\n");
        ok = 0;
    }
    if (fork_errors != 0) {
        printf("sigfork: %d forks failed\n", (int)fork_errors);
    }
    if (!ok) {
        return 1;
    }
    printf("sigfork: ok\n");
    return 0;
}
