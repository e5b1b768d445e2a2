#!/bin/sh
# deps.sh - installs the Debian packages a target needs, or says how.
# Usage: scripts/deps.sh build|test|arm64|fuzz|bench
# As root it runs apt-get; otherwise it prints the one line to run and fails.
set -eu
build="gcc make cmake pkg-config libssl-dev libc-ares-dev liburing-dev"
case "${1:-build}" in
build) pkgs="$build" ;;
test) pkgs="$build libcriterion-dev valgrind openssl dnsmasq-base iproute2 socat curl wrk nginx" ;;
arm64) pkgs="$build gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user" ;;
fuzz) pkgs="$build clang libclang-rt-14-dev libhttp-parser-dev" ;;
bench) pkgs="$build libcriterion-dev liburing-dev libuv1-dev libev-dev libevent-dev libboost-context-dev golang-go python3 linux-perf openssl dnsmasq-base nginx-light iproute2" ;;
*) echo "usage: $0 build|test|arm64|fuzz|bench" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "weft: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q $missing >/dev/null
else
    echo "weft: missing packages; run:"
    echo "    sudo apt-get update && sudo apt-get install -y$missing"
    exit 1
fi
