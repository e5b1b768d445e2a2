# package.cmake - installs weft into a scratch prefix, then configures,
# builds and runs tests/package, a user's project that finds weft with
# find_package and links each of its targets.
# Usage: cmake -DSRC=<source dir> -DBIN=<build dir> -P package.cmake
set(dir ${BIN}/package-check)
file(REMOVE_RECURSE ${dir})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BIN} --prefix ${dir}/prefix
                OUTPUT_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC}/tests/package -B ${dir}/build
                        -DCMAKE_PREFIX_PATH=${dir}/prefix
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the user's project failed:\n${out}\n${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${dir}/build
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the user's project failed:\n${out}\n${err}")
endif()
foreach(exe user_shared user_static)
  execute_process(COMMAND ${dir}/build/${exe} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${exe} exited ${rc}: ${out}${err}")
  endif()
  message(STATUS "${exe}: ${out}")
endforeach()
file(REMOVE_RECURSE ${dir})
