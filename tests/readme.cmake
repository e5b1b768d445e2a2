# readme.cmake - the README's echo server, built by each command the README
# gives, exactly as written, from a scratch directory laid out as the README
# assumes (include/ and build/ side by side).  The statically and the
# shared-linked programs are started to show that they load and serve.
# Usage: cmake -DSRC=<source dir> -DBIN=<build dir> -P readme.cmake
file(READ ${SRC}/README.md readme)
string(REGEX MATCH "```c\n([^`]*)```" block "${readme}")
if(NOT block)
  message(FATAL_ERROR "no C block in README.md")
endif()
set(dir ${BIN}/readme-check)
file(REMOVE_RECURSE ${dir})
file(MAKE_DIRECTORY ${dir})
file(WRITE ${dir}/echo.c "${CMAKE_MATCH_1}")
file(CREATE_LINK ${SRC}/include ${dir}/include SYMBOLIC)
file(CREATE_LINK ${BIN} ${dir}/build SYMBOLIC)

# The pkg-config command needs an installed weft: install into the scratch
# directory and point pkg-config there.
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BIN} --prefix ${dir}/prefix
                OUTPUT_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
set(ENV{PKG_CONFIG_PATH} ${dir}/prefix/lib/pkgconfig)

string(REGEX MATCHALL "`cc echo\\.c[^`]*`" commands "${readme}")
list(LENGTH commands n)
if(n LESS 3)
  message(FATAL_ERROR "expected three build commands in README.md, found ${n}")
endif()
foreach(quoted ${commands})
  string(REGEX REPLACE "^`(.*)`$" "\\1" cmd "${quoted}")
  file(REMOVE ${dir}/a.out)
  execute_process(COMMAND sh -c "${cmd}" WORKING_DIRECTORY ${dir}
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT EXISTS ${dir}/a.out)
    message(FATAL_ERROR "README command failed: ${cmd}\n${err}")
  endif()
  message(STATUS "built: ${cmd}")
  if(NOT cmd MATCHES "pkg-config")
    # It serves until killed: 124 from timeout means it ran; 1 means port
    # 7000 was taken, which still shows it loaded.  Anything else fails.
    execute_process(COMMAND timeout 0.5 ./a.out WORKING_DIRECTORY ${dir}
                    RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 124 AND NOT rc EQUAL 1)
      message(FATAL_ERROR "README program exited ${rc}: ${cmd}\n${err}")
    endif()
    message(STATUS "ran (exit ${rc})")
  endif()
endforeach()
file(REMOVE_RECURSE ${dir})
