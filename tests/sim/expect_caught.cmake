# Runs a mutant's simulated test (cmake -DBINARY=... -DFILTER=... -DEXPECT=...
# -DNAME=... -P expect_caught.cmake) and succeeds only when the run fails
# with output matching EXPECT: the planted bug was caught.
execute_process(COMMAND ${BINARY} --gtest_filter=${FILTER} RESULT_VARIABLE status OUTPUT_VARIABLE out
                ERROR_VARIABLE out)
string(REGEX MATCH "[^\n]*(${EXPECT})[^\n]*" finding "${out}")
if(status EQUAL 0)
  message(FATAL_ERROR "mutant ${NAME} SURVIVED: ${FILTER} passed with the planted bug\n${out}")
elseif(NOT finding)
  message(FATAL_ERROR "mutant ${NAME}: the run failed (status ${status}) but its output does not match '${EXPECT}'\n${out}")
endif()
string(SUBSTRING "${finding}" 0 400 finding)
message(STATUS "mutant ${NAME} caught: ${finding}")
