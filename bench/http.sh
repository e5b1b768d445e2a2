#!/bin/bash
# http.sh - weft's HTTP/1.1 server (examples/http_server, one thread)
# against nginx (one worker), both answering GET / with "hello", under wrk:
#   keepalive  CONNS keep-alive connections, requests back to back;
#   close      CLOSE_CONNS connections, each request on a new one
#              (wrk -H 'Connection: close'; the server closes after it);
#   https      CONNS keep-alive connections over TLS, the same certificate
#              and key for both servers (ECDSA P-256 made at the start;
#              KEY=rsa for RSA 2048).
# nginx answers with `return 200 "hello";` (default_type text/plain,
# server_tokens off); weft's body is the same 5 bytes.  nginx closes a
# keep-alive connection after KEEPALIVE_REQUESTS requests (its
# keepalive_requests; 1000, its default, is also weft's max_requests
# default); how many each server answers on one connection before it closes
# is probed and noted at the start of each scenario.  weft runs on each
# backend of WEFT_BACKENDS (WEFT_BACKEND=...), as weft_<backend>; with
# BASE_BUILD (another configured build directory, of an earlier tree, say)
# its http_server runs too, as base_<backend>, so a change is paired
# against the tree before it in the same run (ratios.py --base base_epoll).
#
# Each server is pinned to CPU SERVER_CPU, wrk (one thread) to CLIENT_CPU.
# For each repetition, every server runs in turn, the order reversed on
# every other repetition (so that slow drift cancels): a WARM-second wrk
# run to warm up, then the measured DUR-second run with --latency.  The
# measure is the server's CPU time over the measured run (from
# /proc/PID/task/*/schedstat, every thread of weft's process, nginx's
# worker) per request completed (wrk's count): srv_ns_rt, the field
# bench/ratios.py pairs by repetition.  The measured run makes its
# connections anew (and, for https, their handshakes: CONNS of them, once
# per run), as both servers do alike.
# Raw lines go to BUILD_DIR/bench-results/http-<date>/raw.txt (wrk's output
# in wrk.txt); the end prints the paired ratios weft/nginx (median and
# quartiles, CPU per request and req/s) and the medians per server.
#
# usage: bench/http.sh BUILD_DIR
# Environment knobs (defaults in brackets):
#   REPS [9]  DUR [3]  WARM [1]  CONNS [100]  CLOSE_CONNS [100]  KEY [ec]
#   SCENARIOS ["keepalive close https"]  WEFT_BACKENDS ["epoll io_uring"]
#   BASE_BUILD [none]  KEEPALIVE_REQUESTS [1000]  NGINX_DEFERRED [0] (1: nginx listens with
#   "deferred", TCP_DEFER_ACCEPT, as weft's HTTP server always does)
#   SERVER_CPU [0]  CLIENT_CPU [1]  NGINX [/usr/sbin/nginx]  WRK [wrk]
set -u
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR   (a configured CMake build directory)" >&2
	exit 2
fi
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || dirname "$HERE")
REPS=${REPS:-9}
DUR=${DUR:-3}
WARM=${WARM:-1}
CONNS=${CONNS:-100}
CLOSE_CONNS=${CLOSE_CONNS:-100}
KEY=${KEY:-ec}
SCENARIOS=${SCENARIOS:-"keepalive close https"}
WEFT_BACKENDS=${WEFT_BACKENDS-"epoll io_uring"}
BASE_BUILD=${BASE_BUILD:-}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-wrk}
KEEPALIVE_REQUESTS=${KEEPALIVE_REQUESTS:-1000}
NGINX_DEFERRED=${NGINX_DEFERRED:-0}
deferred=""
[ "$NGINX_DEFERRED" = 1 ] && deferred=" deferred"

for s in $SCENARIOS; do
	case $s in keepalive | close | https) ;; *) echo "unknown scenario $s" >&2; exit 2 ;; esac
done
[ -n "$WEFT_BACKENDS" ] || { echo "WEFT_BACKENDS is empty" >&2; exit 2; }
command -v "$WRK" >/dev/null || { echo "no wrk ($WRK)" >&2; exit 2; }
[ -x "$NGINX" ] || { echo "no nginx at $NGINX" >&2; exit 2; }

OUT=$BUILD/bench-results/http-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
RAW=$OUT/raw.txt
: >"$RAW"
check_build "$BUILD" "$RAW"
if ! cmake --build "$BUILD" --target http_server >"$OUT/build.log" 2>&1; then
	echo "building http_server failed; see $OUT/build.log" >&2
	exit 1
fi
HTTPD=$BUILD/examples/http_server
BASE_HTTPD=""
if [ -n "$BASE_BUILD" ]; then
	BASE_BUILD=$(cd "$BASE_BUILD" && pwd) || exit 2
	if ! cmake --build "$BASE_BUILD" --target http_server >"$OUT/build-base.log" 2>&1; then
		echo "building BASE_BUILD's http_server failed; see $OUT/build-base.log" >&2
		exit 1
	fi
	BASE_HTTPD=$BASE_BUILD/examples/http_server
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	PIDS=()
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- one certificate for both servers ------------------------------------------
make_cert

steal() { awk '$1 == "cpu" {print $9}' /proc/stat; } # jiffies, both CPUs

# ---- the servers, per scenario ---------------------------------------------------
# start_servers SCENARIO: nginx and one weft per backend, each on a port of
# its own; sets PORT_<name> and PID_<name> (the process whose CPU counts).
SERVERS="nginx"
for b in $WEFT_BACKENDS; do SERVERS="$SERVERS weft_$b"; done
if [ -n "$BASE_HTTPD" ]; then
	for b in $WEFT_BACKENDS; do SERVERS="$SERVERS base_$b"; done
fi
start_servers() {
	local sc=$1 ssl="" tlsargs=() p
	if [ "$sc" = https ]; then
		ssl=" ssl"
		tlsargs=(--cert "$TMP/cert.pem" --key "$TMP/key.pem")
	fi
	p=$(free_port)
	rm -rf "$TMP/nginx"
	mkdir -p "$TMP/nginx"
	cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log crit;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests $KEEPALIVE_REQUESTS;
    server_tokens off;
    default_type text/plain;
    server {
        listen 127.0.0.1:$p$ssl$deferred;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { return 200 "hello"; }
    }
}
EOF
	cp "$TMP/nginx/nginx.conf" "$OUT/nginx-$sc.conf"
	taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' \
		>>"$OUT/nginx.log" 2>&1 &
	PIDS+=($!)
	wait_listen "$p" || { echo "nginx did not start; see $OUT/nginx.log" >&2; exit 1; }
	# shellcheck disable=SC2034 # read through ${!v}
	PORT_nginx=$p
	PID_nginx=$(pgrep -P "${PIDS[-1]}" | head -1)
	[ -n "$PID_nginx" ] || { echo "no nginx worker" >&2; exit 1; }
	local s b bin
	for s in $SERVERS; do
		case $s in
		weft_*) b=${s#weft_} bin=$HTTPD ;;
		base_*) b=${s#base_} bin=$BASE_HTTPD ;;
		*) continue ;;
		esac
		p=$(free_port)
		taskset -c "$SERVER_CPU" env WEFT_BACKEND="$b" "$bin" "$p" 1 "${tlsargs[@]}" \
			>>"$OUT/weft.log" 2>&1 &
		PIDS+=($!)
		wait_listen "$p" || { echo "http_server ($s) did not start; see $OUT/weft.log" >&2; exit 1; }
		printf -v "PORT_$s" %s "$p"
		printf -v "PID_$s" %s "${PIDS[-1]}"
	done
}
stop_servers() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	PIDS=()
}
url() { # scenario port
	if [ "$1" = https ]; then echo "https://127.0.0.1:$2/"; else echo "http://127.0.0.1:$2/"; fi
}

{
	echo "# date: $(date -Is)"
	cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
	echo "# host: nproc=$(nproc) kernel=$(uname -r) cpu=$cpu"
	echo "# weft: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown) build=$BUILD (${btype:-?})" \
		"src/http/server.c blob $(git -C "$REPO" hash-object src/http/server.c 2>/dev/null | cut -c1-12)"
	if [ -n "$BASE_HTTPD" ]; then
		src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BASE_BUILD/CMakeCache.txt")
		echo "# base: build=$BASE_BUILD source=$src ($(git -C "$src" describe --always --dirty 2>/dev/null || echo "not a git tree"))"
	fi
	echo "# $("$NGINX" -v 2>&1); $("$WRK" -v 2>&1 | head -1 | cut -d' ' -f1-2); $(openssl version)"
	echo "# REPS=$REPS DUR=$DUR WARM=$WARM CONNS=$CONNS CLOSE_CONNS=$CLOSE_CONNS KEY=$KEY SCENARIOS=\"$SCENARIOS\" SERVERS=\"$SERVERS\" KEEPALIVE_REQUESTS=$KEEPALIVE_REQUESTS NGINX_DEFERRED=$NGINX_DEFERRED"
	echo "# servers on CPU $SERVER_CPU, wrk -t1 on CPU $CLIENT_CPU; https: $keyname, the same certificate for both"
	echo "# loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# srv_ns_rt: server CPU ns per request over the measured run; p99_us: wrk's"
} | tee -a "$RAW"

# How many requests a server answers on one connection before it closes it
# (up to KEEPALIVE_REQUESTS + 1, one at a time).
per_conn() { # scenario port
	python3 - "$1" "$2" "$((KEEPALIVE_REQUESTS + 1))" <<'EOF'
import socket, ssl, sys
sc, port, most = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
if sc == "https":
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    s = ctx.wrap_socket(s)
n = 0
closed = False
while n < most and not closed:
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    buf = b""
    while not buf.endswith(b"hello"):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    if not buf.endswith(b"hello"):
        break
    n += 1
    closed = b"\r\nconnection: close" in buf.lower()
print("closes a connection after %d requests" % n if closed else
      "%d requests on one connection, not closed" % n)
EOF
}

# Response sizes (headers + body) of each server, and the TLS each negotiates.
sizes() { # scenario
	local sc=$1 s port v
	for s in $SERVERS; do
		v="PORT_$s"
		port=${!v}
		if [ "$sc" = close ]; then
			printf '# %s %s: response %s bytes\n' "$sc" "$s" \
				"$(curl -sk -H 'Connection: close' -o /dev/null -w '%{size_header}+%{size_download}' "$(url "$sc" "$port")")"
		else
			printf '# %s %s: response %s bytes\n' "$sc" "$s" \
				"$(curl -sk -o /dev/null -w '%{size_header}+%{size_download}' "$(url "$sc" "$port")")"
		fi
		[ "$sc" = close ] || printf '# %s %s: %s\n' "$sc" "$s" "$(per_conn "$sc" "$port")"
		if [ "$sc" = https ]; then
			printf '# %s %s: %s\n' "$sc" "$s" "$(openssl s_client -connect "127.0.0.1:$port" </dev/null 2>/dev/null |
				grep -m1 -E '^New, ' | sed 's/^New, //')"
		fi
	done
}

# ---- one run ---------------------------------------------------------------------
us() { # wrk's "1.23ms" -> microseconds
	awk -v x="$1" 'BEGIN {
		n = x + 0; u = x; sub(/^[0-9.]+/, "", u)
		if (u == "us") f = 1; else if (u == "ms") f = 1e3; else if (u == "s") f = 1e6; else if (u == "m") f = 6e7; else f = -1
		if (f < 0) print ""; else printf "%.0f", n * f }'
}
declare -a bad=()
cap=$((DUR + WARM + 15))
run_one() { # rep scenario server
	local rep=$1 sc=$2 srv=$3 v port pid c hdr=()
	v="PORT_$srv" port=${!v}
	v="PID_$srv" pid=${!v}
	c=$CONNS
	[ "$sc" = close ] && { c=$CLOSE_CONNS; hdr=(-H 'Connection: close'); }
	local u tag="rep=$rep sc=$sc server=$srv"
	u=$(url "$sc" "$port")
	timeout -k 2 "$cap" taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$c" -d"${WARM}s" "${hdr[@]}" "$u" >/dev/null 2>&1
	local before after used out rc
	before=$(cpu_ns "$pid")
	out=$(timeout -k 2 "$cap" taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$c" -d"${DUR}s" --latency "${hdr[@]}" "$u" 2>&1)
	rc=$?
	after=$(cpu_ns "$pid")
	used=$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%.0f", a - b}')
	{ echo "== $tag (wrk exit $rc)"; echo "$out"; } >>"$OUT/wrk.txt"
	local reqs secs p50 p99 errs non2xx
	reqs=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' <<<"$out")
	secs=$(sed -n 's/^ *[0-9]* requests in \([0-9.]*\)s,.*/\1/p' <<<"$out")
	p50=$(us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
	p99=$(us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
	errs=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' <<<"$out" |
		awk '{print $1 + $2 + $3 + $4}')
	non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' <<<"$out")
	errs=${errs:-0} non2xx=${non2xx:-0}
	local line=$tag
	if [ -n "$reqs" ] && [ "$reqs" -gt 0 ] && [ -n "$secs" ] && [ "$rc" = 0 ]; then
		line="$line srv_ns_rt=$(awk -v c="$used" -v n="$reqs" 'BEGIN {printf "%.0f", c / n}')"
		line="$line rps=$(awk -v n="$reqs" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')"
		line="$line srv_cpu=$(awk -v c="$used" -v s="$secs" 'BEGIN {printf "%.1f", c / s / 1e7}')"
	else
		line="$line rps=0 failed=1"
		bad+=("$tag: no result from wrk (exit $rc; see $OUT/wrk.txt)")
	fi
	line="$line requests=${reqs:-0} secs=${secs:-0} srv_cpu_ns=$used p50_us=${p50:-0} p99_us=${p99:-0} errors=$errs non2xx=$non2xx conns=$c"
	echo "$line" >>"$RAW"
	echo "$line"
	if [ "$errs" != 0 ] || [ "$non2xx" != 0 ]; then
		bad+=("$tag: $errs socket errors, $non2xx non-2xx responses")
	fi
}

T0=$(date +%s)
S0=$(steal)
for sc in $SCENARIOS; do
	start_servers "$sc"
	sizes "$sc" | tee -a "$RAW"
	for rep in $(seq "$REPS"); do
		order=$SERVERS
		[ $((rep % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$SERVERS" | tac | tr '\n' ' ')
		for srv in $order; do run_one "$rep" "$sc" "$srv"; done
	done
	stop_servers
done
echo "# elapsed: $(($(date +%s) - T0)) s, steal: $(($(steal) - S0)) jiffies of $(($(nproc) * ($(date +%s) - T0) * $(getconf CLK_TCK))), loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" |
	tee -a "$RAW"

# ---- summary -----------------------------------------------------------------------
{
	echo
	echo "## srv_ns_rt (server CPU per request) relative to nginx, paired by repetition (median, then each)"
	echo
	python3 "$HERE/ratios.py" --base nginx "$RAW"
	echo
	echo "## paired ratios weft/nginx: median [quartiles]; medians per server"
	echo
	python3 - "$RAW" "$SERVERS" <<'EOF'
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=([^ ]+)", l)) for l in open(sys.argv[1]) if l.startswith("rep=")]
servers = sys.argv[2].split()
weft = [s for s in servers if s != "nginx"]
med = lambda v: statistics.median(v) if v else float("nan")
def quart(v):
    if len(v) < 2:
        return (float("nan"),) * 2
    q = statistics.quantiles(v, n=4, method="inclusive")
    return q[0], q[2]
def paired(sc, srv, key):
    out = []
    for rep in dict.fromkeys(r["rep"] for r in rows if r["sc"] == sc):
        a = [r for r in rows if r["rep"] == rep and r["sc"] == sc and r["server"] == srv and key in r]
        b = [r for r in rows if r["rep"] == rep and r["sc"] == sc and r["server"] == "nginx" and key in r]
        if a and b and float(b[0][key]) > 0 and "srv_ns_rt" in a[0] and "srv_ns_rt" in b[0]:
            out.append(float(a[0][key]) / float(b[0][key]))
    return out
fmt = lambda v: "%.2f [%.2f-%.2f]" % ((med(v),) + quart(v)) if v else "-"
print("| scenario | server | CPU/req ratio | req/s ratio | p99 ratio | pairs | p99 <= nginx's |")
print("|---|---|---:|---:|---:|---:|---:|")
scs = list(dict.fromkeys(r["sc"] for r in rows))
for sc in scs:
    for s in weft:
        c, q, p = paired(sc, s, "srv_ns_rt"), paired(sc, s, "rps"), paired(sc, s, "p99_us")
        print("| %s | %s | %s | %s | %s | %d | %d |" % (sc, s, fmt(c), fmt(q), fmt(p), len(c),
                                                     sum(1 for x in p if x <= 1)))
print()
print("| scenario | server | req/s | srv ns/req | srv cpu % | p50 us | p99 us | runs | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for sc in scs:
    for s in servers:
        rs = [r for r in rows if r["sc"] == sc and r["server"] == s]
        ok = [r for r in rs if "srv_ns_rt" in r]
        f = lambda k: med([float(r[k]) for r in ok if k in r])
        print("| %s | %s | %.0f | %.0f | %.1f | %.0f | %.0f | %d | %d |" % (
            sc, s, f("rps"), f("srv_ns_rt"), f("srv_cpu"), f("p50_us"), f("p99_us"),
            len(rs), sum(int(r.get("errors", "0")) + int(r.get("non2xx", "0")) for r in rs)))
EOF
	echo
	if [ ${#bad[@]} -gt 0 ]; then
		echo "!!! ${#bad[@]} run(s) with errors or no result:"
		printf '!!!   %s\n' "${bad[@]}"
	else
		echo "no errors: every run completed with only 2xx responses and no socket errors"
	fi
	echo "# raw: $RAW"
} | tee "$OUT/summary.md"
