#!/bin/bash
# run.sh - weft's benchmarks in one go:
#   1. ctxswitch and ctxswitch_ucontext (context switch, yield, spawn), and the
#      yardstick's own ctxswitch as the floor, pinned with taskset -c 1;
#   2. the echo-server comparison: examples/echo_server against the
#      yardstick's reference servers, driven by the yardstick's run.sh;
#   3. idle_rss: server memory per idle connection, both buffer strategies.
# The yardstick (shared/bench beside the repository) is copied into
# BUILD_DIR/yardstick and built there; nothing is written outside BUILD_DIR.
# Results go to BUILD_DIR/bench-results/<date>/; the summary is printed.
#
# usage: bench/run.sh BUILD_DIR
# Environment knobs (defaults in brackets):
#   PARTS        which parts to run: micro echo idle           ["micro echo idle"]
#   PIN DUR WARM REPS THREADS PERF   passed to the yardstick's run.sh  [1 3 1 3 1 1]
#   SERVERS      reference servers                              ["epoll uring libuv go"]
#   SCENARIOS    conns:size list              ["1:64 100:64 1000:64 100:16384 10000:64"]
#   CTX_REPS     repetitions inside ctxswitch                   [5]
#   IDLE_CONNS   connections for idle_rss                       [10000]
#   YARDSTICK    where the yardstick's sources are              [<repo>/../shared/bench]
#   WEFT_BACKENDS  weft's other backends to run the echo server on too,
#                each as weft_<backend> (weft itself runs the default)  [io_uring]
#   BASE         another weft build directory (an earlier commit's, say): its
#                echo_server joins the echo comparison as weft_base, and its
#                ctxswitch runs in turn with this one's, CTX_ROUNDS times [unset]
set -u
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR   (a configured CMake build directory)" >&2
	exit 2
fi
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || dirname "$HERE")
YARDSTICK=${YARDSTICK:-$REPO/../shared/bench}
PARTS=${PARTS:-"micro echo idle"}
export PIN=${PIN:-1} DUR=${DUR:-3} WARM=${WARM:-1} REPS=${REPS:-3}
export THREADS=${THREADS:-1} PERF=${PERF:-1}
SERVERS=${SERVERS:-"epoll uring libuv go"}
SCENARIOS=${SCENARIOS:-"1:64 100:64 1000:64 100:16384 10000:64"}
CTX_REPS=${CTX_REPS:-5}
CTX_ROUNDS=${CTX_ROUNDS:-3}
BASE=${BASE:-}
if [ -n "$BASE" ]; then
	BASE=$(cd "$BASE" && pwd) || exit 2
	for f in examples/echo_server bench/ctxswitch; do
		[ -x "$BASE/$f" ] || { echo "BASE: no $BASE/$f (build it there first)" >&2; exit 2; }
	done
fi
IDLE_CONNS=${IDLE_CONNS:-10000}
WEFT_BACKENDS=${WEFT_BACKENDS-io_uring}

OUT=$BUILD/bench-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
note() { echo "# $*" | tee -a "$OUT/notes.txt"; }

# A sanitizer or debug build would measure the wrong thing.
cache=$BUILD/CMakeCache.txt
if [ -f "$cache" ]; then
	btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
	san=$(sed -n 's/^WEFT_SANITIZE:[A-Z]*=//p' "$cache")
	uctx=$(sed -n 's/^WEFT_UCONTEXT:[A-Z]*=//p' "$cache")
	[ -n "$san" ] && note "warning: built with WEFT_SANITIZE=$san: numbers are not representative"
	case "$btype" in
	"" | Release | RelWithDebInfo) ;; # "" is the top level's default, RelWithDebInfo
	*) note "warning: CMAKE_BUILD_TYPE=$btype (want RelWithDebInfo or Release)" ;;
	esac
	[ "$uctx" = ON ] && note "note: this build uses the ucontext switch (WEFT_UCONTEXT=ON)"
fi
targets=(echo_server ctxswitch ctxswitch_ucontext idle_rss)
if ! cmake --build "$BUILD" --target "${targets[@]}" >"$OUT/build.log" 2>&1; then
	echo "building weft's benchmark targets failed; see $OUT/build.log" >&2
	exit 1
fi

{
	echo "# date: $(date -Is)"
	cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
	echo "# host: nproc=$(nproc) kernel=$(uname -r) cpu=$cpu"
	rev=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
	echo "# weft: $rev build=$BUILD"
	echo "# PARTS=$PARTS PIN=$PIN DUR=$DUR WARM=$WARM REPS=$REPS THREADS=$THREADS"
	echo "# CTX_REPS=$CTX_REPS IDLE_CONNS=$IDLE_CONNS"
	[ -n "$BASE" ] && echo "# base: $BASE (CTX_ROUNDS=$CTX_ROUNDS)"
} | tee "$OUT/meta.txt"

# ---- the yardstick: copy and build what builds ----------------------------
YS=$BUILD/yardstick
built=""
if part echo || part micro; then
	if [ ! -f "$YARDSTICK/Makefile" ]; then
		note "no yardstick at $YARDSTICK: the echo comparison and the switch floor are skipped"
		PARTS=$(tr ' ' '\n' <<<"$PARTS" | grep -vx -e echo | tr '\n' ' ')
	else
		mkdir -p "$YS"
		find "$YARDSTICK" -maxdepth 1 -type f -exec cp -p {} "$YS"/ \;
		want="echoload ctxswitch"
		for s in $SERVERS; do want="$want ref_$s"; done
		for t in $want; do
			if make -C "$YS" "$t" >>"$OUT/yardstick-build.log" 2>&1; then
				built="$built $t"
			else
				note "yardstick: $t does not build here (see yardstick-build.log): skipped"
			fi
		done
	fi
fi
has() { case " $built " in *" $1 "*) return 0 ;; esac; return 1; }

# ---- 1. context switch, yield, spawn ---------------------------------------
if part micro; then
	echo "## ctxswitch (taskset -c 1, CTX_REPS=$CTX_REPS)" | tee "$OUT/ctxswitch.txt"
	for b in ctxswitch ctxswitch_ucontext; do
		taskset -c 1 "$BUILD/bench/$b" "$CTX_REPS" 2>&1 | tee -a "$OUT/ctxswitch.txt"
	done
	if has ctxswitch; then
		echo "## yardstick ctxswitch: the floor (taskset -c 1)" | tee -a "$OUT/ctxswitch.txt"
		taskset -c 1 "$YS/ctxswitch" 10000000 "$CTX_REPS" 2>&1 | tee -a "$OUT/ctxswitch.txt"
	fi
	if [ -n "$BASE" ]; then
		# In turn, so that both see the same machine.
		for r in $(seq "$CTX_ROUNDS"); do
			for b in "$BASE" "$BUILD"; do
				echo "## round $r: $b/bench/ctxswitch" | tee -a "$OUT/ctxswitch.txt"
				taskset -c 1 "$b/bench/ctxswitch" "$CTX_REPS" 2>&1 | tee -a "$OUT/ctxswitch.txt"
			done
		done
	fi
fi

# ---- 2. echo servers --------------------------------------------------------
if part echo; then
	if ! has echoload || ! has ref_epoll; then
		note "echoload or ref_epoll did not build: echo comparison skipped"
	else
		servers=""
		for s in $SERVERS; do has "ref_$s" && servers="$servers $s"; done
		echo "## echo servers: weft vs$servers (PIN=$PIN DUR=$DUR WARM=$WARM REPS=$REPS)"
		# weft on its default backend, then weft_<backend> for each other
		# one asked for (a wrapper sets $WEFT_BACKEND: the yardstick runs
		# commands, not shell lines).
		extra="weft=$BUILD/examples/echo_server {port} {threads}"
		for b in $WEFT_BACKENDS; do
			w="$OUT/echo_server_$b.sh"
			printf '#!/bin/sh\nWEFT_BACKEND=%s exec %s "$@"\n' "$b" "$BUILD/examples/echo_server" >"$w"
			chmod +x "$w"
			extra="$extra;weft_$b=$w {port} {threads}"
		done
		[ -n "$BASE" ] && extra="$extra;weft_base=$BASE/examples/echo_server {port} {threads}"
		SERVERS="$servers" SCENARIOS="$SCENARIOS" OUT="$OUT/echo" EXTRA="$extra" \
			"$YS/run.sh" 2>&1 | tee "$OUT/echo.log"
	fi
fi

# ---- 3. memory per idle connection ------------------------------------------
if part idle; then
	echo "## idle_rss ($IDLE_CONNS connections)" | tee "$OUT/idle_rss.txt"
	for mode in grow stack malloc; do
		"$BUILD/bench/idle_rss" "$IDLE_CONNS" "$mode" 2>&1 | tee -a "$OUT/idle_rss.txt"
	done
fi

# ---- summary ----------------------------------------------------------------
{
	echo "# weft benchmarks, $(date -Is)"
	echo
	cat "$OUT/meta.txt"
	[ -f "$OUT/notes.txt" ] && cat "$OUT/notes.txt"
	for f in ctxswitch.txt echo/summary.md idle_rss.txt; do
		[ -f "$OUT/$f" ] || continue
		echo
		case $f in
		echo/*)
			echo "## echo servers (srv ns/rt = server CPU per round trip)"; echo; cat "$OUT/$f"
			echo; echo "## srv ns/rt relative to ref_epoll, paired by repetition (median, then each)"; echo
			python3 "$HERE/ratios.py" "$OUT/echo/raw.txt"
			if [ -n "$BASE" ]; then
				echo; echo "## srv ns/rt of weft relative to weft_base, paired by repetition"; echo
				python3 "$HERE/ratios.py" --base weft_base "$OUT/echo/raw.txt"
			fi
			;;
		*) echo '```'; cat "$OUT/$f"; echo '```' ;;
		esac
	done
} >"$OUT/summary.md"
echo
echo "==================== summary: $OUT/summary.md ===================="
cat "$OUT/summary.md"
