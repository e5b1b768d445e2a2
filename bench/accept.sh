#!/bin/bash
# accept.sh - accepting: a new connection per request.  bench/churn keeps
# CONC connections in flight, each one a connect, SIZE bytes echoed and
# checked, and a close with a reset, against weft's examples/echo_server on
# each of its backends (weft_epoll, weft_uring: WEFT_BACKEND=epoll|io_uring)
# and the yardstick's reference servers ref_epoll and ref_uring (epoll,
# uring).  The measure is the server's CPU time per connection over the
# measured window (srv_ns_rt, read by churn from the server's process CPU
# clock), with connections per second beside it.
#
# For each repetition, for each concurrency, every server runs in turn
# (the order reversed on every other repetition, so that slow drift
# cancels): server pinned with taskset -c 0, churn with taskset -c 1, on a
# port of 127.0.0.1 that nothing else listens on.  Each run is bounded
# (`timeout` on both sides, churn's own alarm).  The yardstick (shared/bench
# beside the repository) is copied into BUILD_DIR/yardstick and built there.
# Raw lines, in the format of bench/ratios.py, go to
# BUILD_DIR/bench-results/accept-<date>.txt, churn's and the servers'
# messages to accept-<date>.err; the end prints the ratios to ref_epoll,
# paired by repetition, and the medians per server.
#
# usage: bench/accept.sh BUILD_DIR
# Environment knobs (defaults in brackets):
#   REPS         repetitions                                           [9]
#   DUR WARM     measured seconds, warm-up seconds per run             [2 1]
#   CONC         concurrencies, one scenario each                      ["1 50"]
#   SERVERS      weft_<backend> (weft_uring: io_uring), epoll, uring
#                (ref_epoll, ref_uring)       ["weft_epoll weft_uring epoll uring"]
#   SIZE         bytes echoed per connection                           [64]
#   BASE         another weft build directory (an earlier commit's): its
#                examples/echo_server joins as weft_base, on BASE_BACKEND
#                [unset; io_uring]
#   SRV_CPU CLI_CPU   cores for taskset                                [0 1]
#   YARDSTICK    where the yardstick's sources are        [<repo>/../shared/bench]
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
YARDSTICK=${YARDSTICK:-$REPO/../shared/bench}
REPS=${REPS:-9} DUR=${DUR:-2} WARM=${WARM:-1} CONC=${CONC:-"1 50"} SIZE=${SIZE:-64}
BASE=${BASE:-} BASE_BACKEND=${BASE_BACKEND:-io_uring}
SERVERS=${SERVERS:-"weft_epoll weft_uring epoll uring${BASE:+ weft_base}"}
SRV_CPU=${SRV_CPU:-0} CLI_CPU=${CLI_CPU:-1}

OUT=$BUILD/bench-results
mkdir -p "$OUT"
stamp=$(date +%Y%m%d-%H%M%S)
RAW=$OUT/accept-$stamp.txt
ERR=$OUT/accept-$stamp.err
: >"$RAW"
: >"$ERR"
TMP=$(mktemp -d)
SPID="" TPID=""
cleanup() {
	[ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null
	[ -n "$TPID" ] && kill -KILL "$TPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- what runs -----------------------------------------------------------
check_build "$BUILD" "$RAW"
if ! cmake --build "$BUILD" --target echo_server churn >"$TMP/build.log" 2>&1; then
	cat "$TMP/build.log" >&2
	echo "building echo_server and churn failed: cmake --build $BUILD --target echo_server churn" >&2
	exit 1
fi
CHURN=$BUILD/bench/churn
ECHO=$BUILD/examples/echo_server

YS=$BUILD/yardstick
want=""
for s in $SERVERS; do
	case $s in weft_*) ;; *) want="$want ref_$s" ;; esac
done
if [ -n "$want" ]; then
	if [ ! -f "$YARDSTICK/Makefile" ]; then
		echo "no yardstick at $YARDSTICK (set YARDSTICK)" >&2
		exit 2
	fi
	mkdir -p "$YS"
	find "$YARDSTICK" -maxdepth 1 -type f -exec cp -p {} "$YS"/ \;
	# shellcheck disable=SC2086
	if ! make -C "$YS" $want >"$TMP/ys.log" 2>&1; then
		cat "$TMP/ys.log" >&2
		echo "building the yardstick's$want in $YS failed" >&2
		exit 1
	fi
fi

# The command of server NAME, in the array CMD.
server_cmd() {
	case $1 in
	weft_uring) CMD=(env WEFT_BACKEND=io_uring "$ECHO") ;;
	weft_base) CMD=(env "WEFT_BACKEND=$BASE_BACKEND" "$BASE/examples/echo_server") ;;
	weft_*) CMD=(env "WEFT_BACKEND=${1#weft_}" "$ECHO") ;;
	*) CMD=(env -u WEFT_BACKEND "$YS/ref_$1") ;;
	esac
}
for s in $SERVERS; do
	server_cmd "$s"
	[ -x "${CMD[-1]}" ] || { echo "unknown server $s (no ${CMD[-1]})" >&2; exit 2; }
done
base=epoll
case " $SERVERS " in *" epoll "*) ;; *) base=$(awk '{print $1}' <<<"$SERVERS") ;; esac

ceil() { awk -v x="$1" 'BEGIN { printf "%d", (x == int(x)) ? x : int(x) + 1 }'; }
cli_cap=$(($(ceil "$DUR") + $(ceil "$WARM") + 15))
srv_cap=$((cli_cap + 20))

{
	echo "# date: $(date -Is)"
	echo "# host: nproc=$(nproc) kernel=$(uname -r) cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "# weft: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown) build=$BUILD"
	echo "# REPS=$REPS DUR=$DUR WARM=$WARM CONC=\"$CONC\" SIZE=$SIZE SERVERS=\"$SERVERS\" server on CPU $SRV_CPU, churn on CPU $CLI_CPU"
	echo "# loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# srv_ns_rt: server CPU ns per connection (connect, echo, reset) over the measured window"
} | tee -a "$RAW"

# ---- one run ---------------------------------------------------------------
# Listening sockets on 127.0.0.1:PORT (or any address) in this namespace.
listeners() {
	local hex
	hex=$(printf '%04X' "$1")
	cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { n++ } END { print n + 0 }'
}
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports below the ephemeral range, from a random start, each tried once per script.
port=$((20000 + RANDOM % 9000))
next_port() {
	for _ in $(seq 50); do
		port=$((port + 1))
		[ $port -ge 30000 ] && port=20001
		[ "$(listeners $port)" = 0 ] && return 0
	done
	return 1
}

# Stops the server (TERM, then KILL after 3 s) and reaps its `timeout`.
stop_server() {
	[ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null
	for _ in $(seq 60); do
		kill -0 "$TPID" 2>/dev/null || break
		sleep 0.05
	done
	kill -0 "$TPID" 2>/dev/null && { kill -KILL "$SPID" "$TPID" 2>/dev/null; echo "server did not stop on TERM: killed" >>"$TMP/srv.err"; }
	wait "$TPID" 2>/dev/null
	SPID="" TPID=""
}

# Starts server NAME on a free port: sets SPID (the server), TPID (its timeout).
start_server() {
	local name=$1
	server_cmd "$name"
	for _ in 1 2 3 4 5; do
		next_port || return 1
		: >"$TMP/srv.err"
		timeout -k 2 "$srv_cap" taskset -c "$SRV_CPU" "${CMD[@]}" "$port" 1 \
			>"$TMP/srv.err" 2>&1 &
		TPID=$! SPID=""
		for _ in $(seq 100); do
			SPID=$(awk '{print $1}' "/proc/$TPID/task/$TPID/children" 2>/dev/null)
			[ -z "$SPID" ] && SPID=$(pgrep -P "$TPID" | head -1)
			[ -n "$SPID" ] && break
			kill -0 "$TPID" 2>/dev/null || break
			sleep 0.02
		done
		for _ in $(seq 100); do
			if [ -z "$SPID" ] || ! kill -0 "$SPID" 2>/dev/null; then break; fi
			if [ "$(listeners $port)" -ge 1 ] && accepts $port; then
				# one listener: ours (someone else's SO_REUSEPORT one would share the load)
				[ "$(listeners $port)" = 1 ] && return 0
				break
			fi
			sleep 0.05
		done
		echo "$name: no start on port $port (listeners=$(listeners $port)): $(head -c 300 "$TMP/srv.err")" >>"$ERR"
		stop_server
	done
	return 1
}

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

declare -a bad=()
run_one() { # rep conc server
	local rep=$1 conc=$2 srv=$3 tag="rep=$1 sc=c$2 server=$3"
	if ! start_server "$srv"; then
		echo "$tag failed=nostart errors=1" | tee -a "$RAW"
		bad+=("$tag: the server did not start (see $ERR)")
		return
	fi
	local res
	res=$(timeout -k 2 "$cli_cap" taskset -c "$CLI_CPU" "$CHURN" -p "$port" -c "$conc" -d "$DUR" \
		-w "$WARM" -s "$SIZE" -P "$SPID" 2>"$TMP/churn.err" | tail -1)
	local crc=${PIPESTATUS[0]} alive=1
	kill -0 "$SPID" 2>/dev/null || alive=0
	stop_server
	if [ -s "$TMP/churn.err" ] || { [ "$alive" = 0 ] && [ -s "$TMP/srv.err" ]; }; then
		{
			echo "== $tag (port $port, churn exit $crc)"
			cat "$TMP/churn.err"
			[ "$alive" = 0 ] && sed 's/^/server: /' "$TMP/srv.err"
		} >>"$ERR"
	fi
	case $res in conns=*) ;; *) res="conns=0 cps=0 errors=1 failed=noresult churn_rc=$crc" ;; esac
	[ "$alive" = 0 ] && res="$res server_died=1"
	local conns ns err cps p99 rest
	conns=$(field conns "$res") ns=$(field srv_ns_conn "$res") err=$(field errors "$res")
	cps=$(field cps "$res") p99=$(field p99_us "$res")
	rest=$(sed -E 's/(^| )(cps|errors|p99_us|srv_ns_conn)=[^ ]*//g; s/^ +//' <<<"$res")
	local line="$tag"
	if [ "${conns:-0}" -gt 0 ] && [ -n "$ns" ] && [ "${ns%%.*}" -gt 0 ] 2>/dev/null; then
		line="$line srv_ns_rt=$ns"
	fi
	line="$line cps=${cps:-0} errors=${err:-1} p99_us=${p99:-0} $rest"
	echo "$line" >>"$RAW"
	printf '%-32s srv_ns_rt=%-7s cps=%-6s errors=%-4s p50_us=%-8s p99_us=%-8s srv_cpu=%s%% cli_cpu=%s%%\n' \
		"$tag" "${ns:-NA}" "${cps:-0}" "${err:-1}" "$(field p50_us "$res")" "${p99:-0}" \
		"$(field srv_cpu "$res")" "$(field cli_cpu "$res")"
	if [ "${err:-1}" != 0 ] || [ "$alive" = 0 ] || [ "${conns:-0}" = 0 ]; then
		local why
		why="errors=${err:-?} ($(grep -oE '(connfail|reset|eof|corrupt|excess|timeout|ioerr)=[1-9][0-9]*|failed=[a-z]+|watchdog=1' <<<"$res" | tr '\n' ' '))"
		[ "$alive" = 0 ] && why="$why, the server died during the run"
		[ "${conns:-0}" = 0 ] && why="$why, no connection completed"
		echo "!!! ERRORS: $tag: $why" | tee -a "$RAW"
		bad+=("$tag: $why")
	fi
}

T0=$(date +%s)
for rep in $(seq "$REPS"); do
	order=$SERVERS
	[ $((rep % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$SERVERS" | grep . | tac | tr '\n' ' ')
	for conc in $CONC; do
		for srv in $order; do run_one "$rep" "$conc" "$srv"; done
	done
done
echo "# elapsed: $(($(date +%s) - T0)) s, loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW"

# ---- summary ---------------------------------------------------------------
echo
echo "## srv_ns_rt (server CPU per connection) relative to $base, paired by repetition (median, then each)"
echo
python3 "$HERE/ratios.py" --base "$base" "$RAW"
echo
echo "## medians over repetitions"
echo
python3 - "$RAW" "$SERVERS" <<'EOF'
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=([^ ]+)", l)) for l in open(sys.argv[1]) if l.startswith("rep=")]
servers = sys.argv[2].split()
scs = list(dict.fromkeys(r["sc"] for r in rows))
med = lambda v: statistics.median(v) if v else float("nan")
print("| scenario | server | cps | srv ns/conn | srv cpu % | p50 us | p99 us | runs | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for sc in scs:
    for s in servers:
        rs = [r for r in rows if r["sc"] == sc and r["server"] == s]
        ok = [r for r in rs if "srv_ns_rt" in r]
        f = lambda k, src=ok: med([float(r[k]) for r in src if k in r])
        print("| %s | %s | %.0f | %.0f | %.1f | %.0f | %.0f | %d | %d |" % (
            sc, s, f("cps", rs), f("srv_ns_rt"), f("srv_cpu"), f("p50_us"), f("p99_us"),
            len(rs), sum(int(r.get("errors", "1")) for r in rs)))
EOF
echo
if [ ${#bad[@]} -gt 0 ]; then
	echo "!!!!!!!! ${#bad[@]} run(s) with errors or failures (details in $ERR):"
	printf '!!!   %s\n' "${bad[@]}"
else
	echo "no errors: every connection of every run was echoed in full and correctly"
fi
echo "# raw: $RAW"
