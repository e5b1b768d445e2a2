# examples/http_server_wrk.cmake - http_server under wrk: 50 keep-alive
# connections on one thread for 2 s against GET /, which must all be
# answered: more than 0 requests, no socket error (connect, read, write,
# timeout) and no answer but 2xx.  The connections outlive the server's
# max_requests (1000 a connection by default) when it is fast, so wrk also
# goes through "Connection: close" and new connections.  Skipped (77)
# without wrk; the server's readiness is probed with bash's /dev/tcp.
add_test(NAME example_http_server_wrk COMMAND bash -c [=[
  command -v wrk >/dev/null || { echo "no wrk" >&2; exit 77; }
  dir=$(mktemp -d) || exit 1
  trap 'rm -rf "$dir"' EXIT
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    "$0" "$port" 2>"$dir/err" & pid=$!
    out=""
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      out=$(exec 3<>"/dev/tcp/127.0.0.1/$port" &&
            printf 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' >&3 && cat <&3) 2>/dev/null
      case "$out" in *hello) break ;; esac
      sleep 0.1
    done
    case "$out" in
    *hello)
      wrk -t 1 -c 50 -d 2 "http://127.0.0.1:$port/" >"$dir/wrk" 2>&1; wrc=$?
      kill -TERM "$pid"; wait "$pid"; rc=$?
      cat "$dir/wrk"
      n=$(awk '/ requests in / { print $1 }' "$dir/wrk")
      fail=""
      [ $wrc -eq 0 ] || fail="$fail; wrk exited $wrc"
      [ -n "$n" ] && [ "$n" -gt 0 ] || fail="$fail; no request answered"
      ! grep -q 'Socket errors' "$dir/wrk" || fail="$fail; socket errors"
      ! grep -q 'Non-2xx' "$dir/wrk" || fail="$fail; answers other than 2xx"
      [ $rc -eq 0 ] || fail="$fail; http_server exited $rc"
      [ -z "$fail" ] && { echo "wrk: $n requests, no errors; exit $rc"; exit 0; }
      echo "http_server under wrk${fail}" >&2; cat "$dir/err" >&2; exit 1 ;;
    esac
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  echo "http_server did not answer" >&2; exit 1
]=] $<TARGET_FILE:http_server>)
set_tests_properties(example_http_server_wrk PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77
  FAIL_REGULAR_EXPRESSION "ERROR: (Address|Leak|Thread|Memory)Sanitizer|WARNING: ThreadSanitizer|runtime error: ")
