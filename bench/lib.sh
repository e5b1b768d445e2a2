#!/bin/bash
# lib.sh - what bench/tls.sh, http.sh and accept.sh share; sourced, after
# they have set TMP (a scratch directory) and, where they care, KEY.

# Warns on RAW (and stdout) when BUILD is not a build to measure: one with
# sanitizers, or of another type than Release or RelWithDebInfo.
check_build() { # BUILD RAW
	local cache=$1/CMakeCache.txt san btype
	[ -f "$cache" ] || return 0
	san=$(sed -n 's/^WEFT_SANITIZE:[A-Z]*=//p' "$cache")
	btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
	[ -n "$san" ] && echo "# warning: built with WEFT_SANITIZE=$san: numbers are not representative" | tee -a "$2"
	case "$btype" in
	"" | Release | RelWithDebInfo) ;;
	*) echo "# warning: CMAKE_BUILD_TYPE=$btype (want RelWithDebInfo or Release)" | tee -a "$2" ;;
	esac
	return 0
}

# One self-signed certificate for localhost and 127.0.0.1, in
# $TMP/cert.pem and $TMP/key.pem: ECDSA P-256, or RSA 2048 with KEY=rsa.
# Sets keyname.  Exits on failure.
# shellcheck disable=SC2034 # keyname: the callers print it
make_cert() {
	local keyopt
	if [ "${KEY:-ec}" = rsa ]; then
		keyopt=(-newkey rsa:2048)
		keyname="RSA 2048"
	else
		keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
		keyname="ECDSA P-256"
	fi
	openssl req -x509 "${keyopt[@]}" -nodes -days 2 -subj /CN=localhost \
		-addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
		-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/req.log" || { cat "$TMP/req.log"; exit 1; }
}

# A port below the ephemeral range (a load generator's thousands of
# connections leave sockets in TIME_WAIT all over that range) that no
# socket uses.
free_port() {
	local p lo
	lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	[ "${lo:-0}" -gt 11000 ] || lo=32768
	while :; do
		p=$((10000 + RANDOM % (lo - 10000)))
		ss -Htan "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
	done
}

# Waits up to 5 s for something to listen on port.
wait_listen() { # port
	for _ in $(seq 100); do
		ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
		sleep 0.05
	done
	return 1
}

# The CPU time of all of pid's threads, ns.
cpu_ns() { # pid
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'
}
