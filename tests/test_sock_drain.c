/*
 * test_sock_drain.c - when a receive that came up short means the socket
 * is drained, and when it does not.  TCP: yes, so the next receive waits
 * for the poller without a syscall, until urgent data (MSG_OOB) is seen,
 * which stops a receive at its mark with bytes queued behind it.  Not for
 * SOCK_SEQPACKET (a record per receive; accepted connections are of their
 * listener's kind), nor for unix streams, whose receives stop at passed
 * descriptors and at a change of sender credentials (SO_PASSCRED).  In
 * each case the bytes queued behind the short receive must come at once.
 */
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 2000 /* a receive that waits this long missed queued data */

/* Puts s on the poller, as any socket that has waited once is: a socket's
 * first wait reports what is queued whatever the edges did, which would
 * hide the case under test. */
static void arm(weft_sock *s)
{
    char c;
    weft_recv(s, &c, 1, 10);
}

static ssize_t recv_str(weft_sock *s, char *buf, size_t n)
{
    ssize_t r = weft_recv(s, buf, n - 1, WAIT_MS);
    buf[r > 0 ? r : 0] = '\0';
    return r;
}

/* ---- TCP ------------------------------------------------------------------ */

typedef struct oob_run {
    ssize_t r[3];
    char got[3][16];
    unsigned long recvs; /* recv syscalls for the plain part */
} oob_run;

static int oob_main(void *arg)
{
    oob_run *o = arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return -1;
    arm(b);
    int fa = weft_sock_fd(a);
    weft_sock_set_nodelay(a, 1);
    /* "ab", then "c" as urgent data, then "de", all queued before the
     * reader looks: a receive stops at the urgent mark. */
    send(fa, "ab", 2, 0);
    send(fa, "c", 1, MSG_OOB);
    send(fa, "de", 2, 0);
    weft_sleep(50);
    o->r[0] = recv_str(b, o->got[0], sizeof o->got[0]);
    /* io_uring's read-ahead may take all four at once (its receive does
     * not stop at the mark): then nothing more is to come. */
    if (o->r[0] == 4)
        o->r[1] = recv_str(b, o->got[1], sizeof o->got[1]) == -ETIMEDOUT ? 2 : -1;
    else
        o->r[1] = recv_str(b, o->got[1], sizeof o->got[1]);
    weft_close(a);
    weft_close(b);
    return 0;
}

Test(sock_drain, tcp_urgent_data_does_not_strand_what_follows, .timeout = 30)
{
    int fds = count_fds();
    oob_run o = {0};
    cr_assert_eq(weft_main(oob_main, &o, NULL), 0);
    if (o.r[0] == 4) {
        cr_assert_str_eq(o.got[0], "abde", "the urgent byte is not in the stream");
        cr_assert_eq(o.r[1], 2, "nothing after them");
    } else {
        cr_assert_eq(o.r[0], 2, "first receive: %zd", o.r[0]);
        cr_assert_str_eq(o.got[0], "ab");
        cr_assert_eq(o.r[1], 2, "the bytes past the urgent mark: %s",
                     weft_err_name((int)o.r[1]));
        cr_assert_str_eq(o.got[1], "de");
    }
    cr_assert_eq(count_fds(), fds);
}

/* The shortcut is kept where it holds: after a short TCP receive, the next
 * one parks without a syscall that would only say EAGAIN. */
static int shortcut_main(void *arg)
{
    oob_run *o = arg;
    weft_sock *a, *b;
    if (make_pair(&a, &b) < 0)
        return -1;
    char buf[64];
    arm(b);
    weft_send(a, "xy", 2, 1000);
    weft_sleep(20);
    o->r[0] = weft_recv(b, buf, sizeof buf, 1000); /* short: drained */
    weft_fault_clear();
    o->r[1] = weft_recv(b, buf, sizeof buf, 30); /* times out */
    o->recvs = weft_fault_calls(WEFT_FAULT_RECV);
    weft_close(a);
    weft_close(b);
    return 0;
}

Test(sock_drain, tcp_short_read_still_skips_the_eagain_syscall, .timeout = 30)
{
    oob_run o = {0};
    cr_assert_eq(weft_main(shortcut_main, &o, NULL), 0);
    cr_assert_eq(o.r[0], 2);
    cr_assert_eq(o.r[1], -ETIMEDOUT);
    /* io_uring: the one receive is the ring's, which waits (no EAGAIN). */
    unsigned long want = strcmp(weft_backend(), "io_uring") == 0 ? 1 : 0;
    cr_assert_eq(o.recvs, want, "%lu receives after a short read on %s", o.recvs, weft_backend());
}

/* ---- SOCK_SEQPACKET --------------------------------------------------------- */

typedef struct seq_run {
    char path[108];
    ssize_t r[2];
    char got[2][16];
} seq_run;

static int seq_main(void *arg)
{
    seq_run *q = arg;
    weft_sock *l, *c, *s;
    weft_addr a;
    int rc;
    if ((rc = weft_addr_unix(&a, q->path)) < 0 || (rc = weft_socket(&l, AF_UNIX, SOCK_SEQPACKET, 0)) < 0)
        return rc;
    if ((rc = weft_bind(l, &a)) < 0 || (rc = weft_listen(l, 8)) < 0)
        return rc;
    if ((rc = weft_socket(&c, AF_UNIX, SOCK_SEQPACKET, 0)) < 0 ||
        (rc = weft_connect(c, &a, 1000)) < 0 || (rc = weft_accept(l, &s, 1000)) < 0)
        return rc;
    arm(s);
    /* Two records queued before the accepted side reads. */
    weft_send(c, "one", 3, 1000);
    weft_send(c, "two", 3, 1000);
    weft_sleep(20);
    q->r[0] = recv_str(s, q->got[0], sizeof q->got[0]);
    q->r[1] = recv_str(s, q->got[1], sizeof q->got[1]);
    weft_close(c);
    weft_close(s);
    weft_close(l);
    unlink(q->path);
    return 0;
}

Test(sock_drain, seqpacket_accepted_socket_keeps_its_records, .timeout = 30)
{
    int fds = count_fds();
    seq_run q = {0};
    snprintf(q.path, sizeof q.path, "/tmp/weft-seq-%d.sock", (int)getpid());
    unlink(q.path);
    cr_assert_eq(weft_main(seq_main, &q, NULL), 0);
    cr_assert_eq(q.r[0], 3);
    cr_assert_str_eq(q.got[0], "one");
    cr_assert_eq(q.r[1], 3, "the second record: %s", weft_err_name((int)q.r[1]));
    cr_assert_str_eq(q.got[1], "two");
    cr_assert_eq(count_fds(), fds);
}

/* ---- unix streams ------------------------------------------------------------ */

static int fdpass_main(void *arg)
{
    seq_run *q = arg;
    weft_sock *p[2];
    if (weft_socketpair(p, SOCK_STREAM) < 0)
        return -1;
    arm(p[1]);
    /* A descriptor with its byte, then plain bytes: a receive without
     * room for the descriptor stops after the byte. */
    weft_send_fd(p[0], 0, 1000);
    weft_send(p[0], "cd", 2, 1000);
    weft_sleep(20);
    q->r[0] = recv_str(p[1], q->got[0], sizeof q->got[0]);
    q->r[1] = recv_str(p[1], q->got[1], sizeof q->got[1]);
    weft_close(p[0]);
    weft_close(p[1]);
    return 0;
}

Test(sock_drain, unix_stream_past_a_passed_descriptor, .timeout = 30)
{
    int fds = count_fds();
    seq_run q = {0};
    cr_assert_eq(weft_main(fdpass_main, &q, NULL), 0);
    cr_assert_eq(q.r[0], 1, "the descriptor's byte: %s", weft_err_name((int)q.r[0]));
    cr_assert_eq(q.r[1], 2, "the bytes after it: %s", weft_err_name((int)q.r[1]));
    cr_assert_str_eq(q.got[1], "cd");
    cr_assert_eq(count_fds(), fds);
}

static int creds_main(void *arg)
{
    seq_run *q = arg;
    weft_sock *p[2];
    if (weft_socketpair(p, SOCK_STREAM) < 0)
        return -1;
    int one = 1;
    setsockopt(weft_sock_fd(p[1]), SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    arm(p[1]);
    /* Bytes from this process, then from a child: with SO_PASSCRED a
     * receive stops where the sender's credentials change. */
    weft_send(p[0], "ab", 2, 1000);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        ssize_t ignored = write(weft_sock_fd(p[0]), "cd", 2);
        _exit(ignored == 2 ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    weft_sleep(20);
    q->r[0] = recv_str(p[1], q->got[0], sizeof q->got[0]);
    q->r[1] = recv_str(p[1], q->got[1], sizeof q->got[1]);
    weft_close(p[0]);
    weft_close(p[1]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(sock_drain, unix_stream_past_a_change_of_sender, .timeout = 30)
{
    int fds = count_fds();
    seq_run q = {0};
    cr_assert_eq(weft_main(creds_main, &q, NULL), 0);
    cr_assert_eq(q.r[0], 2);
    cr_assert_str_eq(q.got[0], "ab");
    cr_assert_eq(q.r[1], 2, "the other sender's bytes: %s", weft_err_name((int)q.r[1]));
    cr_assert_str_eq(q.got[1], "cd");
    cr_assert_eq(count_fds(), fds);
}
