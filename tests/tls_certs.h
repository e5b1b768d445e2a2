/*
 * tls_certs.h - what the TLS tests share: certificates made at run time
 * with the openssl command in a temporary directory, openssl s_server /
 * s_client child processes that always die with the test, and weft-to-weft
 * helpers (contexts from those files, a TLS pair over loopback TCP).
 *
 * certs_make() writes (ECDSA P-256 keys, PEM):
 *   ca.pem ca.key           a throwaway CA, trusted by the tests' clients
 *   cadir/                  ca.pem in a hashed directory (openssl rehash)
 *   srv.pem srv.key         CN=localhost, SAN DNS:localhost IP:127.0.0.1 IP:::1
 *   alt.pem alt.key         CN=alt.test, SAN DNS:alt.test DNS:*.alt.test (for SNI)
 *   other.pem other.key     CN=other.test: right CA, wrong name
 *   expired.pem expired.key CN=localhost with the SANs of srv, valid in 2020 only
 *   self.pem self.key       self-signed CN=localhost with the SANs of srv
 *   rogue.pem rogue.key     CN=localhost with the SANs of srv, signed by another CA
 *   client.pem client.key   CN=weft client, for client certificates
 *   both.pem                srv.pem followed by srv.key (one file holding both)
 * Report hooks make them once per test binary, in Criterion's runner
 * before the first test, pass the directory to the tests in the
 * environment (certs_load() in each test's .init) and remove it after the
 * last test.  rogueca.pem is the other CA.
 * Children are killed with SIGKILL by kids_reap() (a test's .fini) and by
 * the kernel if the test process dies first (PR_SET_PDEATHSIG).
 */
#ifndef WEFT_TLS_CERTS_H
#define WEFT_TLS_CERTS_H

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <weft/testing.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char certs_dir[64];

/* The path of file name in the certificate directory (a static buffer of
 * a small ring, so a few can be used in one call). */
static inline const char *cert(const char *name)
{
    static char ring[8][160];
    static unsigned next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", certs_dir, name);
    return p;
}

/* Runs argv with stdin from in_path (NULL: /dev/null) and stdout and
 * stderr to out_path (NULL: /dev/null).  Returns the pid or -1. */
static inline pid_t kid_spawn(char *const argv[], const char *in_path, const char *out_path,
                              int in_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int in = in_fd >= 0 ? in_fd : open(in_path ? in_path : "/dev/null", O_RDONLY);
    int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0)
        _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    execvp(argv[0], argv);
    _exit(127);
}

/* Runs a shell script in dir and waits for it.  Returns its exit status. */
static inline int run_script(const char *dir, const char *script)
{
    char *argv[] = {"/bin/sh", "-ec", (char *)script, NULL};
    char log[160];
    snprintf(log, sizeof log, "%s/script.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) != 0)
            _exit(127);
        int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
            close(out);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static const char certs_script[] =
    "cat > ca.cnf <<'EOF'\n"
    "[ca]\n"
    "default_ca = d\n"
    "[d]\n"
    "database = index.txt\n"
    "new_certs_dir = .\n"
    "serial = serial\n"
    "default_md = sha256\n"
    "policy = p\n"
    "unique_subject = no\n"
    "copy_extensions = copy\n"
    "[p]\n"
    "commonName = supplied\n"
    "EOF\n"
    "touch index.txt; echo 1000 > serial\n"
    "key() { openssl ecparam -name prime256v1 -genkey -noout -out \"$1.key\"; }\n"
    "ca() { key \"$1\"; openssl req -x509 -new -key \"$1.key\" -subj \"/CN=$2\" -days 30 "
    "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
    "-out \"$1.pem\"; }\n"
    /* leaf NAME CN SAN CA [dates...] */
    "leaf() { n=$1 cn=$2 san=$3 by=$4; shift 4; key $n;\n"
    "  openssl req -new -key $n.key -subj \"/CN=$cn\" -addext \"subjectAltName=$san\" "
    "-out $n.csr;\n"
    "  openssl ca -batch -config ca.cnf -cert $by.pem -keyfile $by.key -in $n.csr -out $n.pem "
    "-notext \"$@\"; }\n"
    "ca ca 'weft test CA'\n"
    "ca rogueca 'rogue CA'\n"
    "SRV='DNS:localhost,IP:127.0.0.1,IP:::1'\n"
    "leaf srv localhost \"$SRV\" ca -days 30\n"
    "leaf alt alt.test 'DNS:alt.test,DNS:*.alt.test' ca -days 30\n"
    "leaf other other.test 'DNS:other.test' ca -days 30\n"
    "leaf client 'weft client' 'DNS:client.test' ca -days 30\n"
    "leaf expired localhost \"$SRV\" ca -startdate 20200101000000Z -enddate 20200102000000Z\n"
    "leaf rogue localhost \"$SRV\" rogueca -days 30\n"
    "key self\n"
    "openssl req -x509 -new -key self.key -subj /CN=localhost -days 30 "
    "-addext \"subjectAltName=$SRV\" -out self.pem\n"
    "cat srv.pem srv.key > both.pem\n"
    "mkdir cadir; cp ca.pem cadir/; openssl rehash cadir\n";

static inline void certs_remove(void)
{
    if (!certs_dir[0])
        return;
    char *argv[] = {"rm", "-rf", certs_dir, NULL};
    pid_t pid = kid_spawn(argv, NULL, NULL, -1);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    certs_dir[0] = '\0';
}

/* Makes the certificates.  Returns 0, or -1 (the reason is in
 * <dir>/script.log, and printed). */
static inline int certs_make(void)
{
    strcpy(certs_dir, "/tmp/weft-tls-XXXXXX");
    if (!mkdtemp(certs_dir))
        return -1;
    int rc = run_script(certs_dir, certs_script);
    if (rc != 0) {
        fprintf(stderr, "making certificates failed (%d); see %s/script.log\n", rc, certs_dir);
        return -1;
    }
    return 0;
}

#define CERTS_ENV "WEFT_TLS_TEST_CERTS"

/* In every test (its .init): finds the directory the runner made. */
static inline bool certs_load(void)
{
    const char *d = getenv(CERTS_ENV);
    if (!d || strlen(d) >= sizeof certs_dir)
        return false;
    strcpy(certs_dir, d);
    return true;
}

/* Once per test binary, in Criterion's runner: the certificates for
 * every test, and their removal after the last one. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    if (certs_make() == 0)
        setenv(CERTS_ENV, certs_dir, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    certs_remove();
}

/* A file's whole content, NUL-terminated, malloc'd (NULL if unreadable). */
static inline char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!buf)
        buf = calloc(1, 1);
    else
        buf[len] = '\0';
    return buf;
}

/* Waits up to ms for path to contain needle.  Returns true if it did. */
static inline bool file_wait_for(const char *path, const char *needle, int ms)
{
    struct timespec nap = {0, 10 * 1000000};
    for (int waited = 0;; waited += 10) {
        char *s = slurp(path);
        bool found = s && strstr(s, needle);
        free(s);
        if (found)
            return true;
        if (waited >= ms)
            return false;
        nanosleep(&nap, NULL);
    }
}

/* ---- child processes that die with the test --------------------------------------- */

#define KIDS_MAX 8
static pid_t kids[KIDS_MAX];

static inline pid_t kid_start(char *const argv[], const char *out_path, int in_fd)
{
    pid_t pid = kid_spawn(argv, NULL, out_path, in_fd);
    if (pid > 0) {
        for (int i = 0; i < KIDS_MAX; i++) {
            if (kids[i] == 0) {
                kids[i] = pid;
                break;
            }
        }
    }
    return pid;
}

/* Waits up to ms for pid to exit.  Returns its status, or -1 if it is
 * still running. */
static inline int kid_wait(pid_t pid, int ms)
{
    struct timespec nap = {0, 5 * 1000000};
    for (int waited = 0;; waited += 5) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            for (int i = 0; i < KIDS_MAX; i++)
                if (kids[i] == pid)
                    kids[i] = 0;
            return st;
        }
        if (r < 0 || waited >= ms)
            return -1;
        nanosleep(&nap, NULL);
    }
}

/* Kills and reaps every child still running. */
static inline void kids_reap(void)
{
    for (int i = 0; i < KIDS_MAX; i++) {
        if (kids[i] > 0) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
            kids[i] = 0;
        }
    }
}

/* A TLS suite's .init and .fini: the certificates in place, no fault
 * armed, and no child (openssl, a server process) outliving the test. */
static inline void tls_suite_setup(void)
{
    cr_assert(certs_load(), "no certificates: see the runner's output");
    weft_fault_clear();
}

static inline void tls_suite_teardown(void)
{
    weft_fault_clear();
    kids_reap();
}

/* Reads the port from s_server's "ACCEPT host:port" line in out_path.
 * Returns the port, or -1 if none came within ms. */
static inline int s_server_port(const char *out_path, int ms)
{
    if (!file_wait_for(out_path, "ACCEPT ", ms))
        return -1;
    char *s = slurp(out_path);
    char *p = s ? strstr(s, "ACCEPT ") : NULL;
    char *colon = p ? strchr(p, '\n') : NULL;
    int port = -1;
    if (colon) {
        *colon = '\0';
        char *last = strrchr(p, ':');
        if (last)
            port = atoi(last + 1);
    }
    free(s);
    return port;
}

/* ---- weft to weft ----------------------------------------------------------------- */

#include "helpers.h"

/* A server context with name.pem and name.key from the directory. */
static inline int ctx_server(weft_tls_ctx **out, const char *name, const weft_tls_opts *extra)
{
    char c[64], k[64];
    snprintf(c, sizeof c, "%s.pem", name);
    snprintf(k, sizeof k, "%s.key", name);
    weft_tls_opts o = extra ? *extra : (weft_tls_opts){0};
    o.cert_file = cert(c);
    o.key_file = cert(k);
    return weft_tls_ctx_new(out, WEFT_TLS_SERVER, &o);
}

/* A client context trusting the test CA (extra's other fields kept). */
static inline int ctx_client(weft_tls_ctx **out, const weft_tls_opts *extra)
{
    weft_tls_opts o = extra ? *extra : (weft_tls_opts){0};
    if (!o.ca_file && !o.ca_dir && !o.ca_pem)
        o.ca_file = cert("ca.pem");
    return weft_tls_ctx_new(out, WEFT_TLS_CLIENT, &o);
}

/* A TLS connection over loopback TCP, both ends in this loop. */
typedef struct tls_pair {
    weft_tls_ctx *sctx, *cctx;
    const char *host;       /* weft_tls_connect's host: "127.0.0.1" if NULL */
    const char *servername; /* if set: weft_tcp_connect, then weft_tls_wrap with it */
    int64_t timeout_ms;     /* both handshakes; 5000 if 0 */
    weft_sock *l, *cli, *srv;
    int cli_rc, srv_rc;
    int port;
    char cli_msg[160]; /* weft_tls_errmsg right after a client failure */
    char srv_msg[160]; /* and a server one */
} tls_pair;

static inline void pair_acceptor(void *arg)
{
    tls_pair *p = arg;
    p->srv_rc = weft_tls_accept(p->l, &p->srv, p->sctx, p->timeout_ms);
    if (p->srv_rc < 0) {
        const char *m = weft_tls_errmsg(NULL);
        snprintf(p->srv_msg, sizeof p->srv_msg, "%s", m ? m : "");
    }
}

/* Opens p in a coroutine: p->cli and p->srv on success of each side.
 * Returns 0 if both sides succeeded, else the client's or server's code. */
static inline int pair_open(tls_pair *p)
{
    if (!p->timeout_ms)
        p->timeout_ms = 5000;
    p->cli = p->srv = NULL;
    p->srv_rc = p->cli_rc = -999;
    p->port = listen_any(&p->l, "127.0.0.1");
    if (p->port < 0)
        return p->cli_rc = p->port;
    int64_t id = weft_go(pair_acceptor, p);
    int rc;
    if (p->servername) {
        weft_sock *s;
        rc = weft_tcp_connect(&s, "127.0.0.1", p->port, p->timeout_ms);
        if (rc == 0 && (rc = weft_tls_wrap(&p->cli, s, p->cctx, p->servername, p->timeout_ms)) < 0)
            weft_close(s);
    } else {
        rc = weft_tls_connect(&p->cli, p->host ? p->host : "127.0.0.1", p->port, p->cctx,
                              p->timeout_ms);
    }
    p->cli_rc = rc;
    if (rc < 0) {
        const char *m = weft_tls_errmsg(NULL);
        snprintf(p->cli_msg, sizeof p->cli_msg, "%s", m ? m : "");
        p->cli = NULL;
    }
    weft_join(id, -1);
    weft_close(p->l);
    p->l = NULL;
    return p->cli_rc < 0 ? p->cli_rc : p->srv_rc;
}

static inline void pair_close(tls_pair *p)
{
    if (p->cli)
        weft_close(p->cli);
    if (p->srv)
        weft_close(p->srv);
    p->cli = p->srv = NULL;
}

#endif
