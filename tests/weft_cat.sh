#!/bin/bash
# weft_cat.sh - weft-cat against socat and openssl s_server / s_client on
# loopback.  Each case starts the peers it needs (listeners on port 0, the
# port read back), checks what came through byte for byte, and kills what
# it started.  Every wait is bounded; none is a timing assertion.
#
# usage: weft_cat.sh WEFT_CAT CASE
#   tcp         16 MiB each way in one connection, client to a socat
#               listener (through pipes) and socat to a weft-cat listener
#               (files); -k serving two connections in turn
#   half_close  the peer sees the end of stdin right after the last byte,
#               answers, and weft-cat prints the answer; a listener goes on
#               sending after its peer's half-close
#   tls         16 MiB each way: weft-cat --tls to s_server and back,
#               s_client to weft-cat -l --tls and back, verifying against a
#               CA made here; a self-signed server refused without
#               --insecure, a wrong name refused
#   udp         datagrams echoed by socat; a UDP listener answering socat
#   unix        16 MiB each way over a unix socket, to and from socat, and
#               TLS over one between two weft-cats; client certificates
#   tty         stdin and stdout a terminal (script(1)): a typed line goes
#               out, the peer's close ends weft-cat though the terminal
#               stays open, and the terminal is not left non-blocking
#   timeout     -w against a listener that never accepts, -w as an idle
#               limit, -q after the end of stdin
#   errors      refused, a bad host name, a port in use, a certificate that
#               does not load (exit 1), bad options (exit 2)
# Exits 0 (passed), 1 (failed) or 77 (skipped: a tool the case needs is
# missing; `scripts/deps.sh test` installs them).
# shellcheck disable=SC2015,SC2016 # "check && check || fail" is meant; '...' is code run later
set -u
wcat=$1
what=$2
dir=$(mktemp -d) || exit 1
pids=()
MiB16=16777216

cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    # What weft-cat said, so that a sanitizer's report shows in the log.
    for f in "$dir"/*.err; do
        [ -s "$f" ] && sed "s|^|  [${f##*/}] |" "$f"
    done
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    exit 1
}

ok() {
    echo "ok: $*"
}

need() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "SKIP: $what needs $tool (scripts/deps.sh test installs it)"; exit 77; }
    done
}

# start CMD...: runs CMD in the background with the caller's redirections
# (stdin too: a plain & would give it /dev/null), without the fifos this
# script holds open on 3 and 4, and remembers it.
start() {
    "$@" <&0 3>&- 4>&- &
    pids+=($!)
    last=$!
}

# finish PID SECS: waits up to SECS for PID to end, kills it if it has not;
# returns its exit status (124 if it had to be killed).
finish() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        return 124
    fi
    wait "$1"
}

# listening_port LOG: the port of a "listening on ...:PORT" line (weft-cat
# -v, socat -d -d), waiting up to 10 s for it.
listening_port() {
    local i port
    for ((i = 0; i < 200; i++)); do
        port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\)$/\1/p' "$1" 2>/dev/null | head -1)
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.05
    done
    cat "$1" >&2
    return 1
}

# pid_port PID: the TCP port PID listens on (openssl s_server prints none
# with -quiet), waiting up to 10 s for it.
pid_port() {
    local i port
    for ((i = 0; i < 200; i++)); do
        port=$(ss -Hltnp 2>/dev/null | sed -n "s/^.* 127\.0\.0\.1:\([0-9][0-9]*\) .*pid=$1,.*/\1/p" | head -1)
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.05
    done
    return 1
}

# wait_for COND SECS: waits up to SECS for the shell condition COND.
wait_for() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        eval "$1" && return 0
        sleep 0.1
    done
    return 1
}

same() { # same FILE1 FILE2 WHAT
    cmp -s "$1" "$2" || fail "$3: $(cmp "$1" "$2" 2>&1 | head -1)"
}

size() {
    stat -c %s "$1" 2>/dev/null || echo 0
}

data() {
    head -c $MiB16 /dev/urandom >"$dir/a"
    head -c $MiB16 /dev/urandom >"$dir/b"
}

# ---------------------------------------------------------------------------

case_tcp() {
    need socat
    data
    cd "$dir" || exit 1
    # weft-cat client, stdin and stdout pipes; socat sends b, keeps what comes.
    start socat -d -d -t 30 TCP-LISTEN:0,bind=127.0.0.1 'OPEN:b,rdonly!!CREATE:got_a' 2>socat.log
    local spid=$last port
    port=$(listening_port socat.log) || fail "socat did not listen"
    # shellcheck disable=SC2002 # pipes on both sides, not files
    cat a | timeout 60 "$wcat" 127.0.0.1 "$port" 2>client.err | cat >got_b
    local rc=${PIPESTATUS[1]}
    [ "$rc" = 0 ] || fail "weft-cat to socat exited $rc"
    finish "$spid" 30 || fail "socat did not finish"
    same a got_a "weft-cat -> socat"
    same b got_b "socat -> weft-cat"
    ok "weft-cat client <-> socat listener, 16 MiB each way, byte-exact"

    # weft-cat -l, stdin and stdout files; socat client.
    rm -f got_a got_b
    start "$wcat" -l -v -p 0 <b >got_a 2>listen.err
    local wpid=$last
    port=$(listening_port listen.err) || fail "weft-cat -l did not listen"
    timeout 60 socat -t 30 - "TCP:127.0.0.1:$port" <a >got_b || fail "socat to weft-cat -l failed"
    finish "$wpid" 30 || fail "weft-cat -l exited $?"
    same a got_a "socat -> weft-cat -l"
    same b got_b "weft-cat -l -> socat"
    ok "socat client <-> weft-cat listener, 16 MiB each way, byte-exact"

    # -k: one connection after another.
    start "$wcat" -l -k -v -p 0 </dev/null >got_k 2>keep.err
    wpid=$last
    port=$(listening_port keep.err) || fail "weft-cat -l -k did not listen"
    echo one | timeout 30 socat -t 10 - "TCP:127.0.0.1:$port" >/dev/null || fail "first -k client"
    echo two | timeout 30 socat -t 10 - "TCP:127.0.0.1:$port" >/dev/null || fail "second -k client"
    wait_for '[ "$(cat got_k)" = "$(printf "one\ntwo")" ]' 30 || fail "-k wrote: $(cat got_k)"
    kill -0 "$wpid" 2>/dev/null || fail "weft-cat -l -k ended after its connections"
    ok "-l -k served two connections in turn"
}

case_half_close() {
    need socat
    cd "$dir" || exit 1
    head -c 1048576 /dev/urandom >question
    # The peer reads to the end of the stream, then answers with the count.
    printf '#!/bin/sh\ncat >"%s/question.got"\necho "answer: $(wc -c <"%s/question.got")"\n' \
        "$dir" "$dir" >answer.sh
    chmod +x answer.sh
    start socat -d -d -t 30 TCP-LISTEN:0,bind=127.0.0.1 "EXEC:$dir/answer.sh" 2>socat.log
    local spid=$last port
    port=$(listening_port socat.log) || fail "socat did not listen"
    timeout 60 "$wcat" 127.0.0.1 "$port" <question >answer.got 2>client.err || fail "weft-cat exited $?"
    finish "$spid" 30
    same question question.got "what the peer read before its EOF"
    [ "$(cat answer.got)" = "answer: 1048576" ] || fail "answer: '$(cat answer.got)'"
    ok "the peer saw EOF after the last byte, answered, and weft-cat printed the answer"

    # A listener whose peer half-closes goes on sending: stdin is a fifo
    # this script writes the answer into only once the question is in.
    mkfifo in
    exec 3<>in
    start "$wcat" -l -v -p 0 <in >question.got2 2>listen.err
    local wpid=$last
    port=$(listening_port listen.err) || fail "weft-cat -l did not listen"
    start socat -t 30 - "TCP:127.0.0.1:$port" <question >reply
    local cpid=$last
    wait_for '[ "$(size question.got2)" = 1048576 ]' 30 || fail "the question did not come in"
    kill -0 "$wpid" 2>/dev/null || fail "weft-cat -l ended at its peer's half-close"
    echo "the answer" >&3
    exec 3>&-
    finish "$cpid" 30 || fail "socat exited $?"
    finish "$wpid" 30 || fail "weft-cat -l exited $?"
    same question question.got2 "question"
    [ "$(cat reply)" = "the answer" ] || fail "reply: '$(cat reply)'"
    ok "weft-cat -l answered after its peer's half-close"
}

# A CA, a server certificate it signed (localhost, 127.0.0.1) and a
# self-signed one, ECDSA P-256.
make_certs() {
    local ext="subjectAltName=DNS:localhost,IP:127.0.0.1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=weft-cat-test-ca -keyout ca.key -out ca.pem 2>req.log &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
            -keyout srv.key -out srv.csr 2>>req.log &&
        printf '%s\n' "$ext" >srv.ext &&
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile srv.ext -out srv.pem 2>>req.log &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=localhost -addext "$ext" -keyout self.key -out self.pem 2>>req.log ||
        { cat req.log; fail "could not make certificates"; }
}

case_tls() {
    need openssl ss
    data
    cd "$dir" || exit 1
    make_certs
    echo hello >hello
    mkfifo quiet
    exec 4<>quiet # an s_server stdin that stays open and says nothing

    # weft-cat --tls -> s_server: 16 MiB, then close_notify; s_server answers
    # it with its own and exits.
    start openssl s_server -quiet -naccept 1 -accept 127.0.0.1:0 -cert srv.pem -key srv.key \
        <quiet >got_a 2>s_server1.log
    local spid=$last port
    port=$(pid_port "$spid") || fail "s_server did not listen"
    timeout 60 "$wcat" --tls --ca ca.pem localhost "$port" <a >/dev/null 2>client1.err ||
        fail "weft-cat --tls to s_server exited $?"
    finish "$spid" 30
    same a got_a "weft-cat --tls -> s_server"
    ok "weft-cat --tls --ca -> openssl s_server, 16 MiB, verified, byte-exact"

    # s_server -> weft-cat --tls: s_server sends its stdin and ends with
    # close_notify at its end.  weft-cat keeps its own side open
    # (--no-shutdown), and sends a line: s_server may be blocked reading.
    start openssl s_server -quiet -naccept 1 -accept 127.0.0.1:0 -cert srv.pem -key srv.key \
        <b >got_hello 2>s_server2.log
    spid=$last
    port=$(pid_port "$spid") || fail "s_server did not listen"
    timeout 60 "$wcat" --tls --ca ca.pem --no-shutdown localhost "$port" <hello >got_b \
        2>client2.err || fail "weft-cat --tls from s_server exited $?"
    finish "$spid" 30
    same b got_b "s_server -> weft-cat --tls"
    same hello got_hello "weft-cat --tls -> s_server (the line)"
    ok "openssl s_server -> weft-cat --tls --ca, 16 MiB, byte-exact"

    # weft-cat -l --tls -> s_client, which verifies it against the CA.
    start "$wcat" -l -v -p 0 --tls --cert srv.pem --key srv.key <a >/dev/null 2>listen1.err
    local wpid=$last
    port=$(listening_port listen1.err) || fail "weft-cat -l --tls did not listen"
    timeout 60 openssl s_client -quiet -nocommands -verify_return_error -CAfile ca.pem \
        -servername localhost -verify_hostname localhost -connect "127.0.0.1:$port" \
        </dev/null >got_a 2>s_client1.log || { cat s_client1.log; fail "s_client exited $?"; }
    finish "$wpid" 30 || fail "weft-cat -l --tls exited $?"
    same a got_a "weft-cat -l --tls -> s_client"
    ok "weft-cat -l --tls -> openssl s_client, 16 MiB, verified, byte-exact"

    # s_client -> weft-cat -l --tls: s_client sends close_notify at its end.
    start "$wcat" -l -v -p 0 --tls --no-shutdown --cert srv.pem --key srv.key </dev/null >got_b \
        2>listen2.err
    wpid=$last
    port=$(listening_port listen2.err) || fail "weft-cat -l --tls did not listen"
    timeout 60 openssl s_client -quiet -no_ign_eof -nocommands -verify_return_error \
        -CAfile ca.pem -servername localhost -connect "127.0.0.1:$port" <b >/dev/null \
        2>s_client2.log || { cat s_client2.log; fail "s_client exited $?"; }
    finish "$wpid" 30 || fail "weft-cat -l --tls exited $?"
    same b got_b "s_client -> weft-cat -l --tls"
    ok "openssl s_client -> weft-cat -l --tls, 16 MiB, byte-exact"

    # A self-signed server: refused with the system's CAs and with ours,
    # accepted with --insecure; trusted as its own CA, a wrong name refused.
    start openssl s_server -quiet -accept 127.0.0.1:0 -cert self.pem -key self.key \
        <quiet >got_self 2>s_server3.log
    spid=$last
    port=$(pid_port "$spid") || fail "s_server did not listen"
    local rc
    timeout 30 "$wcat" --tls localhost "$port" </dev/null 2>untrusted.err
    rc=$?
    [ "$rc" = 1 ] && grep -q "not trusted" untrusted.err ||
        fail "self-signed, system CAs: exit $rc, $(cat untrusted.err)"
    ok "self-signed server refused: $(cat untrusted.err)"
    timeout 30 "$wcat" --tls --ca ca.pem localhost "$port" </dev/null 2>untrusted2.err
    rc=$?
    [ "$rc" = 1 ] && grep -q "not trusted" untrusted2.err ||
        fail "self-signed, --ca of another CA: exit $rc, $(cat untrusted2.err)"
    ok "self-signed server refused with another CA"
    timeout 30 "$wcat" --tls --ca self.pem --servername wrong.test localhost "$port" \
        </dev/null 2>name.err
    rc=$?
    [ "$rc" = 1 ] && grep -q "does not match" name.err || fail "wrong name: exit $rc, $(cat name.err)"
    ok "wrong name refused: $(cat name.err)"
    timeout 30 "$wcat" --tls --insecure localhost "$port" <hello >/dev/null 2>insecure.err ||
        fail "--insecure exited $?"
    wait_for 'grep -q hello got_self' 10 || fail "s_server did not get the line"
    ok "--insecure connects to the self-signed server"
}

case_udp() {
    need socat
    cd "$dir" || exit 1
    start socat -d -d -T 60 UDP-LISTEN:0,bind=127.0.0.1 PIPE 2>socat.log
    local port
    port=$(listening_port socat.log) || fail "socat did not listen"
    # Two reads of stdin, two datagrams; -q: after the end of stdin, wait
    # that long for the echoes.
    { echo one; sleep 0.2; echo two; } | timeout 60 "$wcat" -u -q 5 127.0.0.1 "$port" >echo.got \
        2>udp.err
    local rc=${PIPESTATUS[1]}
    [ "$rc" = 0 ] || fail "weft-cat -u exited $rc"
    [ "$(cat echo.got)" = "$(printf 'one\ntwo')" ] || fail "echo: '$(cat echo.got)'"
    ok "datagrams echoed through socat"

    echo pong >pong
    start "$wcat" -u -l -v -p 0 -q 5 <pong >ping.got 2>udp_listen.err
    local wpid=$last
    port=$(listening_port udp_listen.err) || fail "weft-cat -u -l did not listen"
    echo ping | timeout 60 socat -t 5 - "UDP:127.0.0.1:$port" >pong.got || fail "socat exited $?"
    finish "$wpid" 30 || fail "weft-cat -u -l exited $?"
    [ "$(cat ping.got)" = ping ] || fail "weft-cat -u -l got '$(cat ping.got)'"
    [ "$(cat pong.got)" = pong ] || fail "socat got '$(cat pong.got)'"
    ok "a UDP listener answered its first sender"
}

case_unix() {
    need socat
    data
    cd "$dir" || exit 1
    start socat -t 30 "UNIX-LISTEN:$dir/s1" 'OPEN:b,rdonly!!CREATE:got_a' 2>socat.log
    local spid=$last
    wait_for '[ -S s1 ]' 10 || fail "socat did not listen"
    timeout 60 "$wcat" -U "$dir/s1" <a >got_b 2>client.err || fail "weft-cat -U exited $?"
    finish "$spid" 30
    same a got_a "weft-cat -U -> socat"
    same b got_b "socat -> weft-cat -U"
    ok "weft-cat -U <-> socat, 16 MiB each way"

    rm -f got_a got_b
    start "$wcat" -l -U "$dir/s2" <b >got_a 2>listen.err
    local wpid=$last
    wait_for '[ -S s2 ]' 10 || fail "weft-cat -l -U did not listen"
    timeout 60 socat -t 30 - "UNIX-CONNECT:$dir/s2" <a >got_b || fail "socat exited $?"
    finish "$wpid" 30 || fail "weft-cat -l -U exited $?"
    same a got_a "socat -> weft-cat -l -U"
    same b got_b "weft-cat -l -U -> socat"
    [ -e s2 ] && fail "weft-cat -l -U left its socket file"
    ok "socat <-> weft-cat -l -U, 16 MiB each way, socket file removed"

    if command -v openssl >/dev/null; then
        rm -f got_a got_b
        make_certs
        start "$wcat" -l -U "$dir/s3" --tls --cert srv.pem --key srv.key <a >got_b 2>listen_tls.err
        wpid=$last
        wait_for '[ -S s3 ]' 10 || fail "weft-cat -l -U --tls did not listen"
        timeout 60 "$wcat" -U "$dir/s3" --tls --ca ca.pem <b >got_a 2>client_tls.err ||
            fail "weft-cat -U --tls exited $?"
        finish "$wpid" 30 || fail "weft-cat -l -U --tls exited $?"
        same a got_a "TLS over unix, listener -> client"
        same b got_b "TLS over unix, client -> listener"
        ok "TLS over a unix socket between two weft-cats, 16 MiB each way"

        # -l --ca: a client certificate is asked for and verified.
        start "$wcat" -l -U "$dir/s4" --tls --cert srv.pem --key srv.key --ca ca.pem </dev/null \
            >/dev/null 2>listen_nocert.err
        wpid=$last
        wait_for '[ -S s4 ]' 10 || fail "weft-cat -l -U --tls --ca did not listen"
        local rc
        echo hi | timeout 30 "$wcat" -U "$dir/s4" --tls --ca ca.pem >/dev/null 2>nocert.err
        rc=${PIPESTATUS[1]}
        finish "$wpid" 30
        local lrc=$?
        [ "$rc" = 1 ] && [ "$lrc" = 1 ] && grep -q "did not return a certificate" listen_nocert.err ||
            fail "no client certificate: client exit $rc, listener exit $lrc"
        start "$wcat" -l -U "$dir/s5" --tls --cert srv.pem --key srv.key --ca ca.pem </dev/null \
            >got_hi 2>listen_cert.err
        wpid=$last
        wait_for '[ -S s5 ]' 10 || fail "weft-cat -l -U --tls --ca did not listen"
        echo hi | timeout 30 "$wcat" -U "$dir/s5" --tls --ca ca.pem --cert srv.pem --key srv.key \
            >/dev/null 2>cert.err || fail "with a client certificate: exit $?"
        finish "$wpid" 30 || fail "weft-cat -l --ca exited $?"
        [ "$(cat got_hi)" = hi ] || fail "with a client certificate: got '$(cat got_hi)'"
        ok "-l --ca refused a client without a certificate and took one with"
    fi
}

case_tty() {
    need socat script
    cd "$dir" || exit 1
    printf '#!/bin/sh\nread line\necho "got: $line"\n' >answer.sh
    chmod +x answer.sh
    start socat -d -d TCP-LISTEN:0,bind=127.0.0.1 "EXEC:$dir/answer.sh" 2>socat.log
    local port rc flags
    port=$(listening_port socat.log) || fail "socat did not listen"
    # script's input stays open (fd 3) until weft-cat has ended by itself.
    mkfifo keys
    exec 3<>keys
    echo "typed line" >&3
    timeout 30 script -qfec "'$wcat' 127.0.0.1 $port; echo \"rc=\$?\"; grep ^flags: /proc/self/fdinfo/0" \
        /dev/null <keys >tty.out 2>&1
    rc=$?
    exec 3>&-
    tr -d '\r' <tty.out >tty.err
    [ "$rc" = 0 ] && grep -q "^rc=0$" tty.err || fail "weft-cat on a terminal: script exit $rc"
    grep -q "^got: typed line$" tty.err || fail "the typed line did not go through"
    flags=$(sed -n 's/^flags:[[:space:]]*//p' tty.err)
    [ -n "$flags" ] && (((8#$flags & 8#4000) == 0)) || fail "the terminal's flags: '$flags'"
    ok "on a terminal: the line went, the peer's close ended weft-cat, the terminal blocks as before"
}

case_timeout() {
    need socat perl
    cd "$dir" || exit 1
    # A listener that never accepts, its backlog of one filled by a first
    # connection: the next one's SYN is dropped.
    start perl -MSocket -e 'socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
        bind($s, pack_sockaddr_in(0, inet_aton("127.0.0.1"))) or die "bind: $!";
        listen($s, 0) or die "listen: $!";
        my ($port) = unpack_sockaddr_in(getsockname($s)); $| = 1; print "$port\n"; sleep 120' \
        >perl.port
    wait_for '[ -s perl.port ]' 10 || fail "perl listener did not start"
    local port rc
    port=$(cat perl.port)
    timeout 30 "$wcat" -z -w 2 127.0.0.1 "$port" 2>fill.err # fills the backlog (or times out too)
    timeout 30 "$wcat" -w 1 127.0.0.1 "$port" </dev/null 2>connect.err
    rc=$?
    [ "$rc" = 1 ] && grep -q "timed out" connect.err || fail "-w connect: exit $rc, $(cat connect.err)"
    ok "-w 1 gave up on a listener that never accepts: $(cat connect.err)"

    # -w as an idle limit: the peer never sends, stdin never ends.
    start socat -d -d TCP-LISTEN:0,bind=127.0.0.1 'EXEC:sleep 60' 2>socat.log
    port=$(listening_port socat.log) || fail "socat did not listen"
    mkfifo in
    exec 3<>in
    timeout 30 "$wcat" -w 1 127.0.0.1 "$port" <in >/dev/null 2>idle.err
    rc=$?
    exec 3>&-
    [ "$rc" = 1 ] && grep -q "idle" idle.err || fail "-w idle: exit $rc, $(cat idle.err)"
    ok "-w 1 ended an idle connection: $(cat idle.err)"

    # -q: the peer neither answers nor closes; weft-cat quits after stdin.
    start socat -d -d TCP-LISTEN:0,bind=127.0.0.1 'EXEC:sleep 60' 2>socat2.log
    port=$(listening_port socat2.log) || fail "socat did not listen"
    echo hi | timeout 30 "$wcat" -q 0.5 127.0.0.1 "$port" >/dev/null 2>quit.err
    rc=${PIPESTATUS[1]}
    [ "$rc" = 0 ] || fail "-q 0.5: exit $rc, $(cat quit.err)"
    ok "-q 0.5 quit after the end of stdin"
}

case_errors() {
    cd "$dir" || exit 1
    local rc port wpid
    # A port just closed: refused.
    start "$wcat" -l -v -p 0 </dev/null 2>closed.err
    wpid=$last
    port=$(listening_port closed.err) || fail "weft-cat -l did not listen"
    kill "$wpid"
    wait "$wpid" 2>/dev/null
    # On io_uring the kernel tears a dead process's ring down afterwards,
    # and the listener with it: wait until nothing listens there.
    for _ in $(seq 100); do
        ss -Hltn "sport = :$port" | grep -q . || break
        sleep 0.05
    done
    timeout 30 "$wcat" -w 5 127.0.0.1 "$port" </dev/null 2>refused.err
    rc=$?
    [ "$rc" = 1 ] && grep -q "refused" refused.err || fail "refused: exit $rc, $(cat refused.err)"
    ok "exit 1: $(cat refused.err)"

    timeout 30 "$wcat" -w 5 bad..host 80 </dev/null 2>badhost.err
    rc=$?
    [ "$rc" = 1 ] && grep -q "not a valid host name" badhost.err ||
        fail "bad host: exit $rc, $(cat badhost.err)"
    ok "exit 1: $(cat badhost.err)"

    start "$wcat" -l -v -p 0 </dev/null 2>taken.err
    wpid=$last
    port=$(listening_port taken.err) || fail "weft-cat -l did not listen"
    timeout 30 "$wcat" -l -p "$port" </dev/null 2>inuse.err
    rc=$?
    [ "$rc" = 1 ] && grep -q "in use" inuse.err || fail "port in use: exit $rc, $(cat inuse.err)"
    ok "exit 1: $(cat inuse.err)"

    if "$wcat" -h | grep -q -- --tls; then
        timeout 30 "$wcat" -l -p 0 --tls --cert "$dir/none.pem" </dev/null 2>cert.err
        rc=$?
        [ "$rc" = 1 ] && grep -q "could not be loaded" cert.err ||
            fail "missing certificate: exit $rc, $(cat cert.err)"
        ok "exit 1: $(cat cert.err)"
    fi

    local bad
    while IFS= read -r bad; do
        # shellcheck disable=SC2086
        timeout 30 "$wcat" $bad </dev/null >/dev/null 2>usage.err
        rc=$?
        [ "$rc" = 2 ] && grep -q "^weft-cat: " usage.err || fail "'$bad': exit $rc, $(cat usage.err)"
        ok "exit 2 for '$bad': $(head -1 usage.err)"
    done <<'EOF'
-x localhost 80
localhost
localhost 0
localhost 70000
localhost http
-w abc localhost 80
-w 0 localhost 80
-q -1 localhost 80
-w
-k localhost 80
-p 80 localhost 80
-l
-l -p 1 localhost 2
-u --tls localhost 80
-u -l -k -p 0
-U
-U a b
-u -U path
--ca ca.pem localhost 80
--tls -l -p 0
-l --tls --cert c.pem --insecure -p 0
EOF
}

case "$what" in
tcp | half_close | tls | udp | unix | tty | timeout | errors) "case_$what" ;;
*) echo "usage: $0 WEFT_CAT tcp|half_close|tls|udp|unix|tty|timeout|errors" >&2; exit 2 ;;
esac
echo "PASS: $what"
