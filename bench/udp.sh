#!/bin/bash
# udp.sh - UDP datagrams per second over loopback (bench_udp.c): weft's
# one-at-a-time calls, its batch calls (with and without UDP GSO on the
# sending side) and a plain blocking sendmmsg/recvmmsg loop as the
# yardstick.  Receiver and sender are separate processes pinned to
# different cores with taskset.  Each side counts the datagrams of the
# same DUR seconds after WARM seconds from its first one; each run is
# bounded (the sender stops 0.5 s after its window, the receiver gives up
# after 5 s of silence, and `timeout` caps both); the table shows medians
# of REPS runs.  Rows 1-5 pair a sender and a receiver of the same kind; rows 6-9
# feed each receiver from the fastest sender (plain sendmsg with UDP GSO),
# so they measure how much a receiver can take.
#
# usage: bench/udp.sh BUILD_DIR
# Environment knobs (defaults in brackets):
#   DUR WARM     seconds counted, seconds of warm-up            [3 0.5]
#   REPS         runs per row; the median is shown              [3]
#   SIZE         datagram payload in bytes                      [64]
#   RECV_CPU SEND_CPU   cores for taskset                       [0 1]
#   RCVBUF       receiver's SO_RCVBUF (the kernel caps it)      [4194304]
#   ROWS         which rows to run                              [1 2 3 4 5 6 7 8 9]
set -u
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR   (a configured CMake build directory)" >&2
	exit 2
fi
BUILD=$(cd "$1" && pwd)
DUR=${DUR:-3} WARM=${WARM:-0.5} REPS=${REPS:-3} SIZE=${SIZE:-64}
RECV_CPU=${RECV_CPU:-0} SEND_CPU=${SEND_CPU:-1} RCVBUF=${RCVBUF:-4194304}
ROWS=${ROWS:-"1 2 3 4 5 6 7 8 9"}

cache=$BUILD/CMakeCache.txt
if [ -f "$cache" ]; then
	san=$(sed -n 's/^WEFT_SANITIZE:[A-Z]*=//p' "$cache")
	[ -n "$san" ] && echo "# warning: built with WEFT_SANITIZE=$san: numbers are not representative"
fi
if ! cmake --build "$BUILD" --target bench_udp >/dev/null 2>&1; then
	echo "building bench_udp failed: cmake --build $BUILD --target bench_udp" >&2
	exit 1
fi
BIN=$BUILD/bench/bench_udp
OUT=$BUILD/bench-results
mkdir -p "$OUT"
LOG=$OUT/udp-$(date +%Y%m%d-%H%M%S).txt
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

dur_ms=$(awk -v d="$DUR" 'BEGIN { printf "%d", d * 1000 }')
warm_ms=$(awk -v w="$WARM" 'BEGIN { printf "%d", w * 1000 }')
send_ms=$((dur_ms + warm_ms + 500))
cap=$(((send_ms + 999) / 1000 + 15)) # seconds `timeout` allows either side

# row: "sender-impl sender-batch receiver-impl receiver-batch label"
row_def() {
	case $1 in
	1) echo "plain 64 plain 64 plain sendmmsg(64) -> plain recvmmsg(64) [yardstick]" ;;
	2) echo "weft1 1 weft1 1 weft_sendto -> weft_recvfrom" ;;
	3) echo "weftm 32 weftm 32 weft_sendmmsg(32) -> weft_recvmmsg(32)" ;;
	4) echo "weftm 64 weftm 64 weft_sendmmsg(64) -> weft_recvmmsg(64)" ;;
	5) echo "weftm-var 64 weftm 64 weft_sendmmsg(64) no GSO -> weft_recvmmsg(64)" ;;
	6) echo "plain-gso 64 plain 64 plain GSO sender -> plain recvmmsg(64) [yardstick]" ;;
	7) echo "plain-gso 64 weft1 1 plain GSO sender -> weft_recvfrom" ;;
	8) echo "plain-gso 64 weftm 32 plain GSO sender -> weft_recvmmsg(32)" ;;
	9) echo "plain-gso 64 weftm 64 plain GSO sender -> weft_recvmmsg(64)" ;;
	esac
}

# One run: prints "SEND_DPS RECV_DPS" or "fail fail".
run_once() {
	local simpl=$1 sbatch=$2 rimpl=$3 rbatch=$4 rout=$TMP/recv.out
	: >"$rout"
	timeout "$cap" taskset -c "$RECV_CPU" "$BIN" recv "$rimpl" "$rbatch" "$dur_ms" "$warm_ms" \
		"$RCVBUF" >"$rout" 2>"$TMP/recv.err" &
	local rpid=$! port="" i
	for i in $(seq 100); do
		port=$(awk '/^port /{print $2}' "$rout")
		[ -n "$port" ] && break
		sleep 0.05
	done
	if [ -z "$port" ]; then
		kill "$rpid" 2>/dev/null
		wait "$rpid" 2>/dev/null
		echo "fail fail"
		return
	fi
	local sline
	sline=$(timeout "$cap" taskset -c "$SEND_CPU" "$BIN" send "$simpl" "$sbatch" "$port" \
		"$dur_ms" "$warm_ms" "$SIZE" 2>"$TMP/send.err" | grep '^RESULT')
	wait "$rpid"
	local rline
	rline=$(grep '^RESULT' "$rout")
	local sd rd
	sd=$(sed -n 's/.* dps=\([0-9]*\) err=none$/\1/p' <<<"$sline")
	rd=$(sed -n 's/.* dps=\([0-9]*\) err=none$/\1/p' <<<"$rline")
	echo "${sd:-fail} ${rd:-fail}"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "fail"; else print v[int((NR + 1) / 2)] }'; }

{
	echo "# date: $(date -Is)"
	echo "# host: nproc=$(nproc) kernel=$(uname -r) cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "# SIZE=$SIZE DUR=$DUR WARM=$WARM REPS=$REPS receiver on CPU $RECV_CPU, sender on CPU $SEND_CPU, RCVBUF=$RCVBUF (rmem_max=$(cat /proc/sys/net/core/rmem_max 2>/dev/null))"
	echo "# datagrams per second, medians of $REPS runs; 'lost' = 1 - received/sent"
	printf "%-3s %-58s %12s %12s %7s\n" "#" "sender -> receiver" "sent/s" "received/s" "lost"
} | tee "$LOG"
for r in $ROWS; do
	def=$(row_def "$r")
	[ -z "$def" ] && continue
	read -r simpl sbatch rimpl rbatch label <<<"$def"
	sends=() recvs=()
	for rep in $(seq "$REPS"); do
		read -r sd rd <<<"$(run_once "$simpl" "$sbatch" "$rimpl" "$rbatch")"
		echo "# row $r run $rep: sent/s=$sd received/s=$rd" >>"$LOG"
		[ "$sd" != fail ] && sends+=("$sd")
		[ "$rd" != fail ] && recvs+=("$rd")
	done
	ms=$(printf '%s\n' "${sends[@]}" | grep . | median)
	mr=$(printf '%s\n' "${recvs[@]}" | grep . | median)
	lost=$(awk -v s="$ms" -v r="$mr" 'BEGIN { if (s > 0 && r != "fail") { l = 100 * (1 - r / s); if (l < 0.05 && l > -0.05) l = 0; printf "%.1f%%", l } else print "-" }')
	printf "%-3s %-58s %12s %12s %7s\n" "$r" "$label" "$ms" "$mr" "$lost" | tee -a "$LOG"
done
echo "# log: $LOG"
