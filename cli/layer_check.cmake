# Fails when a source in DIR includes a project header outside the folders in ALLOWED:
#   cmake -DDIR=<dir> -DALLOWED=base,api,manager,cli -P layer_check.cmake
# The build runs it, so a layer cannot quietly reach below the ones it may use.
string(REPLACE "," ";" ALLOWED "${ALLOWED}")
file(GLOB sources ${DIR}/*.cc ${DIR}/*.h)
foreach(source ${sources})
  file(STRINGS ${source} includes REGEX "^#include \"[^\"]+\"")
  foreach(line ${includes})
    string(REGEX REPLACE "^#include \"([^/\"]+)/.*" "\\1" folder "${line}")
    list(FIND ALLOWED "${folder}" found)
    if(found EQUAL -1)
      message(FATAL_ERROR "${source}: ${line}: ${DIR} may include only headers from ${ALLOWED}")
    endif()
  endforeach()
endforeach()
