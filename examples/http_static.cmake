# examples/http_static.cmake - the static file server as a test, with curl
# (skipped, 77, without it): a file whole and its HEAD, Content-Type,
# If-Modified-Since (304, and 200 for an older date), byte ranges (206 with
# Content-Range for a-b, a-, -n and one past the end; 416 past the end),
# a directory's index.html (and the redirect to its path with '/'),
# percent-decoding, 404 for paths leaving DIR ("..", "%2e%2e", symbolic
# links relative and absolute) and an encoded '/', 400 for "%00" and a
# malformed escape, 405 with Allow; then SIGTERM, and a clean exit.
add_test(NAME example_http_static COMMAND bash -c [=[
  command -v curl >/dev/null || { echo "no curl" >&2; exit 77; }
  dir=$(mktemp -d) || exit 1
  trap 'rm -rf "$dir"' EXIT
  mkdir -p "$dir/root/sub" && printf 0123456789 >"$dir/root/a.txt" &&
    printf '<p>index</p>' >"$dir/root/sub/index.html" && printf x >"$dir/root/my file.txt" &&
    echo secret >"$dir/secret" && ln -s ../secret "$dir/root/out" &&
    ln -s /etc/passwd "$dir/root/abs" && ln -s a.txt "$dir/root/in" || exit 1
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    "$0" "$port" "$dir/root" 2>"$dir/err" & pid=$!
    out=""
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      out=$(curl -s "http://127.0.0.1:$port/a.txt" 2>/dev/null) && [ "$out" = 0123456789 ] && break
      sleep 0.1
    done
    if [ "$out" = 0123456789 ]; then
      u="http://127.0.0.1:$port"
      fail=""
      # expect WHAT GOT WANT: records a mismatch
      expect() { [ "$2" = "$3" ] || fail="$fail
  $1: got '$2', want '$3'"; }
      # status URL-PATH [curl options]: the status code alone
      status() { local p=$1; shift; curl -s --path-as-is -o /dev/null -w '%{http_code}' "$@" "$u$p"; }
      # field NAME URL-PATH [curl options]: a response field's value
      field() { local n=$1 p=$2; shift 2
        curl -s --path-as-is -D - -o /dev/null "$@" "$u$p" | tr -d '\r' |
          awk -v n="$n" 'BEGIN { n = tolower(n) ": " } index(tolower($0), n) == 1 { print substr($0, length(n) + 1) }'; }
      expect "GET" "$(curl -s "$u/a.txt")" 0123456789
      expect "absolute-form" "$(curl -s --request-target "http://h.example/a.txt" "$u/")" 0123456789
      expect "Content-Type" "$(field Content-Type /a.txt)" "text/plain; charset=utf-8"
      expect "HEAD status" "$(status /a.txt -I)" 200
      expect "HEAD length" "$(field Content-Length /a.txt -I)" 10
      # A HEAD then a GET on one connection: a body after the HEAD's head
      # would run into the GET's status line.
      two=$(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'HEAD /a.txt HTTP/1.1\r\nHost: a\r\n\r\nGET /in HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' >&3 && cat <&3 | tr -d '\r')
      expect "HEAD, then GET" "$(printf '%s\n' "$two" | grep -c '^HTTP/1.1 200 OK$')" 2
      expect "GET after HEAD" "${two##*$'\n'}" 0123456789
      lm=$(field Last-Modified /a.txt -I)
      expect "Last-Modified" "${lm:+set}" set
      expect "If-Modified-Since now" "$(status /a.txt -H "If-Modified-Since: $lm")" 304
      expect "If-Modified-Since 1970" "$(status /a.txt -H 'If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT')" 200
      expect "If-Modified-Since junk" "$(status /a.txt -H 'If-Modified-Since: yesterday')" 200
      expect "Range 2-5" "$(curl -s -H 'Range: bytes=2-5' "$u/a.txt")" 2345
      expect "Range 2-5 status" "$(status /a.txt -H 'Range: bytes=2-5')" 206
      expect "Content-Range 2-5" "$(field Content-Range /a.txt -H 'Range: bytes=2-5')" "bytes 2-5/10"
      expect "Range 7-" "$(curl -s -H 'Range: bytes=7-' "$u/a.txt")" 789
      expect "Range -3" "$(curl -s -H 'Range: bytes=-3' "$u/a.txt")" 789
      expect "Content-Range 8-99" "$(field Content-Range /a.txt -H 'Range: bytes=8-99')" "bytes 8-9/10"
      expect "Range 10- status" "$(status /a.txt -H 'Range: bytes=10-')" 416
      expect "Content-Range 10-" "$(field Content-Range /a.txt -H 'Range: bytes=10-')" "bytes */10"
      expect "Range 1-2,4-5" "$(curl -s -H 'Range: bytes=1-2,4-5' "$u/a.txt")" 0123456789
      expect "index.html" "$(curl -s "$u/sub/")" "<p>index</p>"
      expect "index.html type" "$(field Content-Type /sub/)" "text/html; charset=utf-8"
      expect "directory without /" "$(status /sub)" 301
      expect "Location" "$(field Location /sub)" /sub/
      expect "%20" "$(curl -s "$u/my%20file.txt")" x
      expect "%2e" "$(curl -s "$u/a%2etxt")" 0123456789
      expect "link within" "$(curl -s "$u/in")" 0123456789
      expect "../ escape" "$(status /../secret)" 404
      expect "%2e%2e/ escape" "$(status /%2e%2e/secret)" 404
      expect "sub/../../ escape" "$(status /sub/../../secret)" 404
      expect "symlink out" "$(status /out)" 404
      expect "absolute symlink out" "$(status /abs)" 404
      expect "encoded /" "$(status /sub%2Findex.html)" 404
      expect "missing" "$(status /nothing)" 404
      expect "%00" "$(status /a.txt%00)" 400
      expect "bad escape" "$(status /a%zz.txt)" 400
      expect "POST" "$(status /a.txt -d x)" 405
      expect "Allow" "$(field Allow /a.txt -X DELETE)" "GET, HEAD"
      kill -TERM "$pid"; wait "$pid"; rc=$?
      expect "exit" "$rc" 0
      [ -z "$fail" ] && { echo "http_static: every check passed; exit $rc"; exit 0; }
      echo "http_static:$fail" >&2; cat "$dir/err" >&2; exit 1
    fi
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  echo "http_static did not answer" >&2; exit 1
]=] $<TARGET_FILE:http_static>)
set_tests_properties(example_http_static PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77
  FAIL_REGULAR_EXPRESSION "ERROR: (Address|Leak|Thread|Memory)Sanitizer|WARNING: ThreadSanitizer|runtime error: ")
