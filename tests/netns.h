/*
 * netns.h - part of a test run in a child process with a network namespace
 * of its own, so that it can add interfaces or queueing disciplines the host
 * never sees.  The child fills a result record that comes back through a
 * pipe, and the parent asserts on it.  Without the privilege, or without the
 * tools, the child says why and the test skips.
 */
#ifndef WEFT_TEST_NETNS_H
#define WEFT_TEST_NETNS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

/* In the child: a network namespace of its own.  False, with msg saying
 * why, when the process may not make one. */
static inline bool netns_enter(char *msg, size_t len)
{
    if (unshare(CLONE_NEWNET) == 0)
        return true;
    snprintf(msg, len, "cannot make a network namespace (unshare: %s; needs CAP_SYS_ADMIN)",
             weft_err_name(-errno));
    return false;
}

/* In the child: runs cmd with sh.  False, with msg giving the command's
 * first line of output and `lacking` (what its failure means), unless it
 * exits 0. */
static inline bool netns_sh(const char *cmd, const char *lacking, char *msg, size_t len)
{
    char line[512];
    snprintf(line, sizeof line, "%s 2>&1", cmd);
    FILE *p = popen(line, "r");
    char out[120] = "";
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    out[strcspn(out, "\n")] = '\0';
    int st = p ? pclose(p) : -1;
    if (st == 0)
        return true;
    if (st == -1 || (WIFEXITED(st) && WEXITSTATUS(st) == 127))
        snprintf(msg, len, "a tool is missing (\"%s\"; Debian package iproute2)", out);
    else
        snprintf(msg, len, "\"%s\": %s", out, lacking);
    return false;
}

/* Forks; the child runs fn(res) within alarm_s seconds and sends the
 * size bytes of res back, where the parent's res receives them.  Asserts
 * that the child exited cleanly. */
static inline void netns_fork(void (*fn)(void *), void *res, size_t size, unsigned alarm_s)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(alarm_s); /* bounded even if something hangs */
        close(pfd[0]);
        fn(res);
        ssize_t w = write(pfd[1], res, size);
        _exit(w == (ssize_t)size ? 0 : 1);
    }
    close(pfd[1]);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(pfd[0], (char *)res + got, size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(pfd[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
    cr_assert_eq(got, size);
}

#endif
