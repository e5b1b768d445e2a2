# The TLS examples, each run against OpenSSL's own tools with a
# certificate made on the spot (ECDSA P-256, for localhost and 127.0.0.1),
# in a temporary directory removed at the end.
#   example_tls_echo:   tls_echo_server on a random high port (another try
#                       on a new port if that one is taken), `openssl
#                       s_client` verifying it and checking the echo.
#   example_tls_client: tls_client against `openssl s_server -www`: with
#                       --ca it prints the status line and the page; with
#                       the system's CAs it must refuse; --insecure passes.
if(NOT WEFT_WITH_TLS)
  return()
endif()

set(WEFT_TLS_EXAMPLE_CERT [=[
  dir=$(mktemp -d) || exit 1
  pid=
  trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$pid" ] && wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>"$dir/req.log" || { cat "$dir/req.log" >&2; exit 1; }
]=])

set(WEFT_TLS_EXAMPLE_ECHO [=[
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    "$0" "$port" "$dir/cert.pem" "$dir/key.pem" & pid=$!
    sleep 0.2
    for i in 1 2 3; do
      kill -0 "$pid" 2>/dev/null || break
      out=$( (echo "hello, tls"; sleep 1) | timeout 10 openssl s_client -quiet -no_ign_eof \
        -connect "127.0.0.1:$port" -servername localhost -CAfile "$dir/cert.pem" \
        -verify_return_error 2>/dev/null)
      case "$out" in *"hello, tls"*) echo "echoed: $out"; exit 0 ;; esac
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=
  done
  echo "no echo from tls_echo_server" >&2; exit 1
]=])
add_test(NAME example_tls_echo COMMAND bash -c "${WEFT_TLS_EXAMPLE_CERT}${WEFT_TLS_EXAMPLE_ECHO}"
  $<TARGET_FILE:tls_echo_server>)

set(WEFT_TLS_EXAMPLE_CLIENT [=[
  mkfifo "$dir/in" && exec 3<>"$dir/in" # s_server stops at its stdin's end: keep it open
  openssl s_server -accept 127.0.0.1:0 -cert "$dir/cert.pem" -key "$dir/key.pem" -www \
    <&3 >"$dir/server.log" 2>&1 & pid=$!
  port=
  for i in $(seq 100); do
    port=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$dir/server.log")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "s_server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
  url="https://127.0.0.1:$port/"
  out=$("$0" "$url" --ca "$dir/cert.pem") || { echo "tls_client $url --ca failed" >&2; exit 1; }
  printf '%s\n' "$out" | head -4
  case "$out" in
    "HTTP/1.0 200 ok"*"s_server"*) ;;
    *) echo "unexpected response" >&2; exit 1 ;;
  esac
  if "$0" "$url" >/dev/null 2>"$dir/err"; then
    echo "tls_client trusted a certificate no system CA signed" >&2; exit 1
  fi
  grep -q "not trusted" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
  echo "refused as it should: $(cat "$dir/err")"
  "$0" "$url" --insecure | head -1 | grep -q "^HTTP/1.0 200" || { echo "--insecure failed" >&2; exit 1; }
  echo "--insecure: ok"
]=])
add_test(NAME example_tls_client COMMAND bash -c "${WEFT_TLS_EXAMPLE_CERT}${WEFT_TLS_EXAMPLE_CLIENT}"
  $<TARGET_FILE:tls_client>)

set_tests_properties(example_tls_echo example_tls_client PROPERTIES TIMEOUT 60
  FAIL_REGULAR_EXPRESSION
  "ERROR: (Address|Leak|Thread|Memory)Sanitizer|WARNING: ThreadSanitizer|runtime error: ")
