# Run at build time (cmake -P) by src/cli/CMakeLists.txt: writes OUT, a header defining
# SRLM_GIT_COMMIT as the source tree's commit now ("-dirty" when tracked files differ from
# it), and rewrites it only when that changes, so `srlm version` names the commit of the
# build, not of the last configure, without recompiling anything when nothing changed.
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SRC}
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT commit)
  set(commit "unknown (not built from a git checkout)")
else()
  execute_process(COMMAND git diff --quiet HEAD -- WORKING_DIRECTORY ${SRC} RESULT_VARIABLE dirty ERROR_QUIET)
  if(NOT dirty EQUAL 0)
    set(commit "${commit}-dirty")
  endif()
endif()
set(text "/* written by cmake/git_commit.cmake at build time */\n#define SRLM_GIT_COMMIT \"${commit}\"\n")
set(old "")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
