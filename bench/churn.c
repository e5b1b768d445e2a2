/*
 * churn.c - a new connection per request, against a loopback echo server.
 *
 * Keeps CONCURRENCY connections in flight to 127.0.0.1:PORT.  Each one:
 * a non-blocking connect, SIZE bytes sent, the whole echo read back and
 * compared byte for byte (each connection sends its own pseudo-random
 * bytes), then closed with SO_LINGER {1, 0}: a reset, so no TIME_WAIT is
 * left on this side and the ephemeral ports do not run out.  The next
 * connection starts at once.  Plain C and epoll: it does not use weft.
 *
 * Connections completed in the measured window (DUR seconds after WARM
 * seconds of warm-up) are counted, with the latency of each (connect to
 * the last byte of the echo) in a log-bucket histogram (<= ~3 % error).
 * Errors count over the whole run: failed connects, a reset or an end of
 * stream before the whole echo, wrong or extra bytes, and connections
 * still unfinished after 5 s.
 *
 * With -P PID, the CPU time of process PID (the server) over exactly the
 * window: srv_cpu_ns from the process's CPU clock (clock_getcpuclockid,
 * nanoseconds, all its threads, exited ones too) and srv_stat_ns from
 * utime + stime of /proc/PID/stat (clock ticks, so +-2 ticks); srv_ns_conn
 * is srv_cpu_ns per completed connection (srv_stat_ns where the clock
 * cannot be read).
 *
 * usage: churn -p PORT -c CONCURRENCY -d SECONDS -w WARMUP [-s SIZE] [-P PID] [-q]
 * stdout: "window start" and "window end" (flushed as they happen), then
 * one machine-readable line:
 *   conns=N cps=X errors=E p50_us=.. p99_us=.. ... srv_cpu_ns=.. srv_ns_conn=..
 * Exit status 0 when there were no errors and connections completed.
 * Bounded: a hard alarm ends the process after DUR + WARM + 10 s.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the build defines it too */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONC 10000
#define MAX_SIZE (1 << 20)
#define PAT_MOD 4093u /* prime: distinct start offsets of a connection's bytes */
#define RBUF_SZ (256 << 10)
#define CONN_TIMEOUT_NS (5ull * 1000000000ull)
#define SCAN_NS (50ull * 1000000ull) /* how often unfinished connections are checked */

/* ---------- latency histogram: 32 sub-buckets per power of two ---------- */
#define H_SUB_BITS 5
#define H_SUB (1 << H_SUB_BITS)
#define H_N (64 * H_SUB)
static uint64_t hist[H_N];
static uint64_t lat_max, lat_cnt;

static int hist_idx(uint64_t v)
{
	if (v < 2 * H_SUB)
		return (int)v;
	int msb = 63 - __builtin_clzll(v);
	int shift = msb - H_SUB_BITS;
	return (shift + 1) * H_SUB + (int)((v >> shift) & (H_SUB - 1));
}

static uint64_t hist_mid(int idx)
{
	if (idx < 2 * H_SUB)
		return (uint64_t)idx;
	int shift = idx / H_SUB - 1;
	uint64_t lo = (uint64_t)(H_SUB + idx % H_SUB) << shift;
	return lo + ((1ull << shift) >> 1);
}

static void hist_add(uint64_t ns)
{
	hist[hist_idx(ns)]++;
	lat_cnt++;
	if (ns > lat_max)
		lat_max = ns;
}

static double hist_pct_us(double q)
{
	if (lat_cnt == 0)
		return 0.0;
	uint64_t target = (uint64_t)ceil(q * (double)lat_cnt);
	if (target < 1)
		target = 1;
	uint64_t acc = 0;
	for (int i = 0; i < H_N; i++) {
		acc += hist[i];
		if (acc >= target) {
			uint64_t v = hist_mid(i);
			return (double)(v > lat_max ? lat_max : v) / 1000.0;
		}
	}
	return (double)lat_max / 1000.0;
}

/* ---------- state ---------- */
enum { S_FREE, S_CONNECTING, S_UP };

struct conn {
	int fd;
	int state;
	uint64_t seq;     /* which connection this is, over the run: picks its bytes */
	uint64_t t_start; /* when connect was called */
	size_t sent, rcvd;
};

static struct conn *conns;
static int nconc, msg_size = 64, quiet;
static unsigned char *pattern;
static unsigned char rbuf[RBUF_SZ];
static int ep;
static struct sockaddr_in sa;
static uint64_t next_seq;
static int measuring;
static int nfree; /* slots waiting for their next connection */
static uint64_t win_conns, total_conns;
static uint64_t err_connect, err_reset, err_eof, err_corrupt, err_excess, err_timeout, err_io;
static int err_printed;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t self_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of a whole process from its CPU clock, in ns; -1 if unreadable. */
static int64_t proc_clock_ns(clockid_t clk)
{
	struct timespec ts;
	if (clock_gettime(clk, &ts) < 0)
		return -1;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* utime + stime of /proc/PID/stat, in ns (clock ticks converted); -1 if unreadable. */
static int64_t proc_stat_ns(int pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	/* the command name, in parentheses, may hold spaces: fields count
	 * from the last ')'; utime and stime are fields 14 and 15. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long long ut, st;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0)
		return -1;
	return (int64_t)((ut + st) * (1000000000ull / (unsigned long long)hz));
}

static const unsigned char *conn_bytes(const struct conn *c)
{
	return pattern + (c->seq * 131u + (c->seq >> 12) * 17u) % PAT_MOD;
}

static void die(const char *m)
{
	perror(m);
	exit(2);
}

static void note_err(const struct conn *c, const char *why)
{
	if (quiet || err_printed >= 10)
		return;
	fprintf(stderr, "churn: connection %llu: %s (sent %zu, echoed %zu, after %.1f ms)\n",
		(unsigned long long)c->seq, why, c->sent, c->rcvd,
		(double)(now_ns() - c->t_start) / 1e6);
	if (++err_printed == 10)
		fprintf(stderr, "churn: (further errors not shown)\n");
}

/* Closes with a reset: no TIME_WAIT here. */
static void conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		struct linger lg = {1, 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		close(c->fd); /* also leaves the epoll set */
	}
	c->fd = -1;
	c->state = S_FREE;
	nfree++;
}

static void conn_fail(struct conn *c, uint64_t *counter, const char *why)
{
	(*counter)++;
	note_err(c, why);
	conn_close(c);
}

/* Starts the next connection in slot c (free). */
static void conn_start(struct conn *c)
{
	c->seq = next_seq++;
	c->sent = c->rcvd = 0;
	c->t_start = now_ns();
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	c->fd = fd;
	c->state = S_CONNECTING;
	if (msg_size > 4096) { /* several segments: none held back by Nagle */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		conn_fail(c, &err_connect, strerror(errno));
		return;
	}
	/* Edge-triggered: the connect's completion shows as EPOLLOUT, the
	 * echo as EPOLLIN; each handler goes on until EAGAIN. */
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl add");
}

static void conn_done(struct conn *c, uint64_t t)
{
	total_conns++;
	if (measuring) {
		win_conns++;
		hist_add(t - c->t_start);
	}
	conn_close(c);
}

/* Sends what is left; 0, or -1 when the connection is gone. */
static int conn_write(struct conn *c)
{
	const unsigned char *b = conn_bytes(c);
	while (c->sent < (size_t)msg_size) {
		ssize_t w = send(c->fd, b + c->sent, (size_t)msg_size - c->sent, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			if (errno == ECONNRESET || errno == EPIPE)
				conn_fail(c, &err_reset, "reset while sending");
			else
				conn_fail(c, &err_io, strerror(errno));
			return -1;
		}
		c->sent += (size_t)w;
	}
	return 0;
}

/* Reads and checks the echo; 1 when all of it is in, 0 for more to come,
 * -1 when the connection is gone. */
static int conn_read(struct conn *c)
{
	const unsigned char *b = conn_bytes(c);
	for (;;) {
		ssize_t n = read(c->fd, rbuf, sizeof rbuf);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			if (errno == ECONNRESET)
				conn_fail(c, &err_reset, "reset before the whole echo");
			else
				conn_fail(c, &err_io, strerror(errno));
			return -1;
		}
		if (n == 0) {
			conn_fail(c, &err_eof, "closed by the server before the whole echo");
			return -1;
		}
		if (c->rcvd + (size_t)n > c->sent) {
			conn_fail(c, &err_excess, "more bytes echoed than were sent");
			return -1;
		}
		if (memcmp(rbuf, b + c->rcvd, (size_t)n) != 0) {
			size_t k = 0;
			while (rbuf[k] == b[c->rcvd + k])
				k++;
			char why[128];
			snprintf(why, sizeof why, "wrong echo at byte %zu: got 0x%02x, want 0x%02x",
				 c->rcvd + k, rbuf[k], b[c->rcvd + k]);
			conn_fail(c, &err_corrupt, why);
			return -1;
		}
		c->rcvd += (size_t)n;
		if (c->rcvd == (size_t)msg_size)
			return 1; /* anything after it would be excess; not looked for */
	}
}

static void on_event(struct conn *c, uint32_t events)
{
	if (c->state == S_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int err = 0;
		socklen_t el = sizeof err;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			conn_fail(c, &err_connect, strerror(err));
			return;
		}
		c->state = S_UP;
	}
	if (conn_write(c) < 0)
		return;
	int r = conn_read(c);
	if (r == 1)
		conn_done(c, now_ns());
}

static void watchdog(int sig)
{
	(void)sig;
	static const char e[] = "churn: watchdog fired, aborting\n";
	static const char o[] = "conns=0 cps=0 errors=1 p50_us=0 p99_us=0 watchdog=1\n";
	if (write(2, e, sizeof e - 1) < 0 || write(1, o, sizeof o - 1) < 0) {
	}
	_exit(3);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: churn -p PORT -c CONCURRENCY -d SECONDS -w WARMUP [-s SIZE] [-P PID] [-H ADDR] [-q]\n"
		"  -p PORT   the echo server's port on 127.0.0.1\n"
		"  -c N      connections in flight (1..%d)\n"
		"  -d S      measured seconds\n"
		"  -w S      warm-up seconds, not measured\n"
		"  -s N      bytes sent and echoed per connection (1..%d); default 64\n"
		"  -P PID    the server's process: its CPU time over the measured window\n"
		"  -H ADDR   a loopback IPv4 address (127.0.0.0/8); default 127.0.0.1\n"
		"  -q        no error messages on stderr\n",
		MAX_CONC, MAX_SIZE);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int port = 0, opt, srv_pid = 0;
	double dur_s = -1, warm_s = -1;
	while ((opt = getopt(argc, argv, "p:c:d:w:s:P:H:qh")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'c': nconc = atoi(optarg); break;
		case 'd': dur_s = atof(optarg); break;
		case 'w': warm_s = atof(optarg); break;
		case 's': msg_size = atoi(optarg); break;
		case 'P': srv_pid = atoi(optarg); break;
		case 'H': host = optarg; break;
		case 'q': quiet = 1; break;
		default: usage();
		}
	}
	if (optind < argc || port <= 0 || port > 65535 || nconc < 1 || nconc > MAX_CONC ||
	    msg_size < 1 || msg_size > MAX_SIZE || !(dur_s > 0) || dur_s > 3600 || !(warm_s >= 0) ||
	    warm_s > 600 || srv_pid < 0)
		usage();

	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "churn: refusing %s: only loopback IPv4 addresses (127.0.0.0/8)\n", host);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, watchdog);
	alarm((unsigned)ceil(dur_s + warm_s) + 10);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconc + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)nconc + 64) {
			fprintf(stderr, "churn: RLIMIT_NOFILE %llu too small for %d connections\n",
				(unsigned long long)rl.rlim_cur, nconc);
			return 2;
		}
	}

	clockid_t srv_clk = 0;
	int have_clk = 0;
	if (srv_pid > 0) {
		if (proc_stat_ns(srv_pid) < 0) {
			fprintf(stderr, "churn: no process %d to measure\n", srv_pid);
			return 2;
		}
		have_clk = clock_getcpuclockid(srv_pid, &srv_clk) == 0 && proc_clock_ns(srv_clk) >= 0;
	}

	/* pseudo-random bytes; a connection's are a window into them */
	pattern = malloc((size_t)msg_size + PAT_MOD);
	if (!pattern)
		die("malloc");
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < (size_t)msg_size + PAT_MOD; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pattern[i] = (unsigned char)(x >> 24);
	}

	conns = calloc((size_t)nconc, sizeof *conns);
	int evmax = nconc < 1024 ? nconc : 1024;
	struct epoll_event *evs = calloc((size_t)evmax, sizeof *evs);
	if (!conns || !evs)
		die("calloc");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");

	uint64_t t0 = now_ns();
	uint64_t m_start = t0 + (uint64_t)(warm_s * 1e9), m_end = UINT64_MAX, last_scan = t0;
	uint64_t cpu0 = 0;
	int64_t clk0 = -1, stat0 = -1;
	for (int i = 0; i < nconc; i++) {
		conns[i].fd = -1;
		conns[i].state = S_FREE;
	}
	nfree = nconc;
	for (;;) {
		if (nfree > 0) { /* the next connection in each free slot */
			nfree = 0;
			for (int i = 0; i < nconc; i++)
				if (conns[i].state == S_FREE)
					conn_start(&conns[i]);
		}
		int n = epoll_wait(ep, evs, evmax, 10);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->state != S_FREE)
				on_event(c, evs[i].events);
		}
		uint64_t t = now_ns();
		if (t - last_scan >= SCAN_NS) {
			last_scan = t;
			for (int i = 0; i < nconc; i++)
				if (conns[i].state != S_FREE && t - conns[i].t_start > CONN_TIMEOUT_NS)
					conn_fail(&conns[i], &err_timeout,
						  conns[i].state == S_CONNECTING ? "connect timed out (5 s)"
										 : "echo timed out (5 s)");
		}
		if (!measuring && t >= m_start) {
			if (srv_pid > 0) {
				stat0 = proc_stat_ns(srv_pid);
				if (have_clk)
					clk0 = proc_clock_ns(srv_clk);
			}
			cpu0 = self_cpu_ns();
			m_start = now_ns();
			m_end = m_start + (uint64_t)(dur_s * 1e9);
			measuring = 1;
			fputs("window start\n", stdout);
			fflush(stdout);
		} else if (measuring && t >= m_end) {
			break;
		}
	}
	int64_t clk1 = -1, stat1 = -1;
	if (srv_pid > 0) {
		if (have_clk)
			clk1 = proc_clock_ns(srv_clk);
		stat1 = proc_stat_ns(srv_pid);
	}
	uint64_t m_stop = now_ns();
	measuring = 0;
	fputs("window end\n", stdout);
	fflush(stdout);
	double secs = (double)(m_stop - m_start) / 1e9;
	double cli_cpu = (double)(self_cpu_ns() - cpu0) / (double)(m_stop - m_start) * 100.0;

	/* those still in flight: late ones are errors too, the rest just go */
	int inflight = 0;
	for (int i = 0; i < nconc; i++) {
		if (conns[i].state == S_FREE)
			continue;
		if (m_stop - conns[i].t_start > CONN_TIMEOUT_NS)
			conn_fail(&conns[i], &err_timeout, "timed out (5 s)");
		else {
			inflight++;
			conn_close(&conns[i]);
		}
	}

	int64_t srv_cpu_ns = -1, srv_stat_ns = -1;
	if (clk0 >= 0 && clk1 >= clk0)
		srv_cpu_ns = clk1 - clk0;
	if (stat0 >= 0 && stat1 >= stat0)
		srv_stat_ns = stat1 - stat0;
	int64_t srv_ns = srv_cpu_ns >= 0 ? srv_cpu_ns : srv_stat_ns;
	double srv_ns_conn = srv_ns >= 0 && win_conns ? (double)srv_ns / (double)win_conns : -1;
	double srv_cpu = srv_ns >= 0 ? (double)srv_ns / (double)(m_stop - m_start) * 100.0 : -1;

	uint64_t errors = err_connect + err_reset + err_eof + err_corrupt + err_excess + err_timeout + err_io;
	printf("conns=%llu cps=%.0f errors=%llu p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
	       "connfail=%llu reset=%llu eof=%llu corrupt=%llu excess=%llu timeout=%llu ioerr=%llu "
	       "conc=%d size=%d secs=%.3f total=%llu inflight=%d cli_cpu=%.1f srv_cpu=%.1f "
	       "srv_cpu_ns=%lld srv_stat_ns=%lld srv_ns_conn=%.0f\n",
	       (unsigned long long)win_conns, (double)win_conns / secs, (unsigned long long)errors,
	       hist_pct_us(0.50), hist_pct_us(0.99), hist_pct_us(0.999), (double)lat_max / 1000.0,
	       (unsigned long long)err_connect, (unsigned long long)err_reset,
	       (unsigned long long)err_eof, (unsigned long long)err_corrupt,
	       (unsigned long long)err_excess, (unsigned long long)err_timeout,
	       (unsigned long long)err_io, nconc, msg_size, secs, (unsigned long long)total_conns,
	       inflight, cli_cpu, srv_cpu, (long long)srv_cpu_ns, (long long)srv_stat_ns, srv_ns_conn);
	fflush(stdout);
	return (errors || win_conns == 0) ? 1 : 0;
}
