# examples/ping.cmake - the ping example as a test: three ICMP echoes to
# 127.0.0.1.  A raw socket needs CAP_NET_RAW; without it the example prints
# why and exits 77, which SKIP_RETURN_CODE makes ctest report as skipped
# rather than failed, with the reason in the test's output.
add_test(NAME example_ping COMMAND ping 127.0.0.1 3)
set_tests_properties(example_ping PROPERTIES TIMEOUT 30 SKIP_RETURN_CODE 77
  FAIL_REGULAR_EXPRESSION
  "ERROR: (Address|Leak|Thread|Memory)Sanitizer|WARNING: ThreadSanitizer|runtime error: ")
