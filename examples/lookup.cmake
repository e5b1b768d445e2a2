# weft answers localhost itself (RFC 6761): nothing goes on the wire.
add_test(NAME example_lookup COMMAND lookup localhost http)
set_tests_properties(example_lookup PROPERTIES TIMEOUT 30
  PASS_REGULAR_EXPRESSION "inet +stream +proto 6 +127\\.0\\.0\\.1:80")
add_test(NAME example_lookup_system COMMAND lookup localhost http system)
set_tests_properties(example_lookup_system PROPERTIES TIMEOUT 30
  PASS_REGULAR_EXPRESSION "inet +stream +proto 6 +127\\.0\\.0\\.1:80")
