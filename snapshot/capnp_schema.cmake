# Generates C++ from the snapshot schemas (state.capnp, devices.capnp) into <build>/snapshot/, so
# "snapshot/state.capnp.h" resolves against ${CMAKE_BINARY_DIR}. Included by
# snapshot/CMakeLists.txt (in the main and the fuzz build). Sets WISP_SNAPSHOT_CAPNP_SRC (the generated .c++)
# and the CAPNP_* pkg-config variables. One command for both: state.capnp imports devices.capnp,
# and its generated header includes devices.capnp.h.
find_package(PkgConfig REQUIRED)
pkg_check_modules(CAPNP REQUIRED capnp kj)
find_program(CAPNP_EXECUTABLE capnp REQUIRED)
find_program(CAPNPC_CXX_EXECUTABLE capnpc-c++ REQUIRED)

set(WISP_SNAPSHOT_GEN ${CMAKE_BINARY_DIR}/snapshot)
set(WISP_SNAPSHOT_SCHEMAS state devices)
set(WISP_SNAPSHOT_CAPNP_SRC "")
set(outputs "")
set(inputs "")
foreach(schema ${WISP_SNAPSHOT_SCHEMAS})
  list(APPEND WISP_SNAPSHOT_CAPNP_SRC ${WISP_SNAPSHOT_GEN}/${schema}.capnp.c++)
  list(APPEND outputs ${WISP_SNAPSHOT_GEN}/${schema}.capnp.h ${WISP_SNAPSHOT_GEN}/${schema}.capnp.c++)
  list(APPEND inputs ${CMAKE_SOURCE_DIR}/snapshot/${schema}.capnp)
endforeach()
add_custom_command(
  OUTPUT ${outputs}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${WISP_SNAPSHOT_GEN}
  COMMAND ${CAPNP_EXECUTABLE} compile -o${CAPNPC_CXX_EXECUTABLE}:${WISP_SNAPSHOT_GEN}
          --src-prefix=${CMAKE_SOURCE_DIR}/snapshot ${inputs}
  DEPENDS ${inputs}
  COMMENT "capnp compile snapshot/{state,devices}.capnp"
  VERBATIM)
# Generated code is not ours to keep warning-free.
set_source_files_properties(${WISP_SNAPSHOT_CAPNP_SRC} PROPERTIES COMPILE_OPTIONS -w GENERATED ON)
