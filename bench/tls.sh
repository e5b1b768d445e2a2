#!/bin/bash
# tls.sh - TLS benchmarks, with bench_tls (bench/bench_tls.c) as the client:
#   1. handshakes per second, full and resumed, against nginx (one worker)
#      and against weft's examples/tls_echo_server (one thread), side by
#      side: the same certificate and key (ECDSA P-256; KEY=rsa for RSA
#      2048), each server pinned to CPU SERVER_CPU and the client to
#      CLIENT_CPU.  Besides the rate, the server's own CPU time per
#      handshake (from /proc/PID/task/*/schedstat): OpenSSL's client side
#      costs more than its server side, so the client's CPU may be what
#      bounds the rate, and the server's cost per handshake is then the
#      comparison that tells;
#   2. bulk MB/s through tls_echo_server (weft client, weft server).
# Every run lasts DUR seconds; each figure is the median of REPS runs.
# Results go to BUILD_DIR/bench-results/tls-<date>/ (raw lines, summary).
#
# usage: bench/tls.sh BUILD_DIR
# Environment knobs (defaults in brackets):
#   DUR [3]  REPS [5]  CONNS [16]  KEY [ec]  SERVER_CPU [0]  CLIENT_CPU [1]
#   BULK_CONNS ["1 16"]  BULK_SIZE [16384]
#   SCENARIOS ["full|full --req|resumed --req|full --tls12|resumed --tls12"]
#   NGINX [/usr/sbin/nginx]
set -u
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR   (a configured CMake build directory)" >&2
	exit 2
fi
BUILD=$(cd "$1" && pwd)
DUR=${DUR:-3}
REPS=${REPS:-5}
CONNS=${CONNS:-16}
KEY=${KEY:-ec}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BULK_CONNS=${BULK_CONNS:-"1 16"}
BULK_SIZE=${BULK_SIZE:-16384}
SCENARIOS=${SCENARIOS:-"full|full --req|resumed --req|full --tls12|resumed --tls12"}
NGINX=${NGINX:-/usr/sbin/nginx}

OUT=$BUILD/bench-results/tls-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
if ! cmake --build "$BUILD" --target bench_tls tls_echo_server >"$OUT/build.log" 2>&1; then
	echo "building bench_tls and tls_echo_server failed; see $OUT/build.log" >&2
	exit 1
fi
BENCH=$BUILD/bench/bench_tls
ECHO=$BUILD/examples/tls_echo_server
san=$(sed -n 's/^WEFT_SANITIZE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
[ -n "$san" ] && echo "# warning: built with WEFT_SANITIZE=$san: numbers are not representative" | tee -a "$OUT/notes.txt"

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- one certificate for both servers ------------------------------------------
make_cert

sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", a - b}'; } # bash's integers are fine, awk's %d is not
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# ---- the servers ---------------------------------------------------------------
NGINX_PORT=$(free_port)
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
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { return 200 "ok\n"; }
    }
}
EOF
taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' \
	>"$OUT/nginx.log" 2>&1 &
NGINX_MASTER=$!
PIDS+=("$NGINX_MASTER")
wait_listen "$NGINX_PORT" || { echo "nginx did not start; see $OUT/nginx.log" >&2; exit 1; }
NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -1)

WEFT_PORT=$(free_port)
taskset -c "$SERVER_CPU" "$ECHO" "$WEFT_PORT" "$TMP/cert.pem" "$TMP/key.pem" 1 >"$OUT/weft.log" 2>&1 &
WEFT_PID=$!
PIDS+=("$WEFT_PID")
wait_listen "$WEFT_PORT" || { echo "tls_echo_server did not start; see $OUT/weft.log" >&2; exit 1; }

{
	echo "# date: $(date -Is)"
	cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
	echo "# host: nproc=$(nproc) kernel=$(uname -r) cpu=$cpu"
	echo "# $(openssl version); $("$NGINX" -v 2>&1)"
	echo "# key: $keyname; servers on CPU $SERVER_CPU, client on CPU $CLIENT_CPU"
	echo "# DUR=$DUR REPS=$REPS CONNS=$CONNS BULK_CONNS=\"$BULK_CONNS\" BULK_SIZE=$BULK_SIZE"
	echo "# nginx: $NGINX -p DIR -c DIR/nginx.conf -g 'daemon off;' (1 worker), port $NGINX_PORT"
	echo "# weft:  $ECHO PORT cert.pem key.pem 1, port $WEFT_PORT"
} | tee "$OUT/meta.txt"
cp "$TMP/nginx/nginx.conf" "$OUT/nginx.conf"

# ---- 1. handshakes --------------------------------------------------------------
# one NAME PID PORT ARGS...: one run; prints "rate server_us_per_handshake
# resumed_percent" (nothing if the run failed) and keeps the raw line.
one() {
	local name=$1 pid=$2 port=$3
	shift 3
	local before after used line ops rate resumed errors
	before=$(cpu_ns "$pid")
	line=$(taskset -c "$CLIENT_CPU" "$BENCH" "$1" 127.0.0.1 "$port" "${@:2}" \
		--ca "$TMP/cert.pem" --secs "$DUR" 2>&1)
	after=$(cpu_ns "$pid")
	used=$(sub "$after" "$before")
	echo "$name $* :: $line server_cpu_ns=$used" >>"$OUT/raw.txt"
	ops=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' <<<"$line")
	rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
	resumed=$(sed -n 's/.* resumed=\([0-9]*\).*/\1/p' <<<"$line")
	errors=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
	if [ -z "$ops" ] || [ "$ops" -eq 0 ]; then
		echo "  $name $*: no result: $line" >&2
		return
	fi
	[ "$errors" = 0 ] || echo "  $name $*: $errors errors: $line" >&2
	echo "$rate $(awk -v c="$used" -v n="$ops" 'BEGIN {printf "%.0f", c / n / 1000}')" \
		"$(awk -v r="${resumed:-0}" -v n="$ops" 'BEGIN {printf "%.0f", 100 * r / n}')"
}

SUMMARY=$OUT/summary.md
{
	echo "## Handshakes per second ($keyname, $CONNS client coroutines, median of $REPS x ${DUR}s)"
	echo
	echo "| scenario | nginx hs/s | weft hs/s | nginx server CPU µs/hs | weft server CPU µs/hs | resumed % (nginx / weft) |"
	echo "|---|---:|---:|---:|---:|---:|"
} >"$SUMMARY"
col() { awk -v k="$1" '{print $k}' "$2" | median; } # field, file
IFS='|' read -r -a scen <<<"$SCENARIOS"
for s in "${scen[@]}"; do
	: >"$TMP/n.txt"
	: >"$TMP/w.txt"
	# Interleaved, so that drift in the machine's speed hits both alike.
	for _ in $(seq "$REPS"); do
		# shellcheck disable=SC2086
		one nginx "$NGINX_WORKER" "$NGINX_PORT" $s --conns "$CONNS" >>"$TMP/n.txt"
		# shellcheck disable=SC2086
		one weft "$WEFT_PID" "$WEFT_PORT" $s --conns "$CONNS" >>"$TMP/w.txt"
	done
	echo "| $s | $(col 1 "$TMP/n.txt") | $(col 1 "$TMP/w.txt") | $(col 2 "$TMP/n.txt") |" \
		"$(col 2 "$TMP/w.txt") | $(col 3 "$TMP/n.txt") / $(col 3 "$TMP/w.txt") |" | tee -a "$SUMMARY"
done

# ---- 2. bulk through the echo ------------------------------------------------------
{
	echo
	echo "## Bulk through tls_echo_server ($BULK_SIZE-byte writes, weft client, median of $REPS x ${DUR}s)"
	echo
	echo "| connections | MB/s echoed back | server CPU % |"
	echo "|---:|---:|---:|"
} >>"$SUMMARY"
for c in $BULK_CONNS; do
	mbs=() loads=()
	for _ in $(seq "$REPS"); do
		before=$(cpu_ns "$WEFT_PID")
		line=$(taskset -c "$CLIENT_CPU" "$BENCH" bulk 127.0.0.1 "$WEFT_PORT" --conns "$c" \
			--size "$BULK_SIZE" --ca "$TMP/cert.pem" --secs "$DUR" 2>&1)
		after=$(cpu_ns "$WEFT_PID")
		used=$(sub "$after" "$before")
		echo "weft bulk conns=$c :: $line server_cpu_ns=$used" >>"$OUT/raw.txt"
		rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
		secs=$(sed -n 's/.* secs=\([0-9.]*\).*/\1/p' <<<"$line")
		[ -n "$rate" ] || { echo "  bulk $c: no result: $line" >&2; continue; }
		mbs+=("$rate")
		loads+=("$(awk -v c="$used" -v s="$secs" 'BEGIN {printf "%.0f", c / (s * 1e7)}')")
	done
	echo "| $c | $(printf '%s\n' "${mbs[@]}" | median) | $(printf '%s\n' "${loads[@]}" | median) |" |
		tee -a "$SUMMARY"
done

echo
echo "# summary: $SUMMARY; every run: $OUT/raw.txt"
