# Copies backend.proto (INPUT) to OUTPUT with optimize_for = LITE_RUNTIME
# added after its package line. See CMakeLists.txt for why.
file(READ ${INPUT} content)
string(REPLACE "package corral.backend.v1;"
       "package corral.backend.v1;\noption optimize_for = LITE_RUNTIME;"
       content "${content}")
if(NOT content MATCHES "LITE_RUNTIME")
  message(FATAL_ERROR "no package line in ${INPUT}")
endif()
file(WRITE ${OUTPUT}.tmp "${content}")
file(COPY_FILE ${OUTPUT}.tmp ${OUTPUT} ONLY_IF_DIFFERENT)
