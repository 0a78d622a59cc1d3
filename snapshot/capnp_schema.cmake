# Generates C++ from the snapshot schemas (state.capnp, devices.capnp) into <build>/snapshot/, so
# "snapshot/state.capnp.h" resolves against ${CMAKE_BINARY_DIR}. Shared by
# snapshot/CMakeLists.txt and the fuzz build. Sets WISP_SNAPSHOT_CAPNP_SRC (the generated .c++)
# and the CAPNP_* pkg-config variables.
find_package(PkgConfig REQUIRED)
pkg_check_modules(CAPNP REQUIRED capnp kj)
find_program(CAPNP_EXECUTABLE capnp REQUIRED)
find_program(CAPNPC_CXX_EXECUTABLE capnpc-c++ REQUIRED)

set(WISP_SNAPSHOT_GEN ${CMAKE_BINARY_DIR}/snapshot)
set(WISP_SNAPSHOT_CAPNP_SRC "")
foreach(schema state devices)
  set(src ${WISP_SNAPSHOT_GEN}/${schema}.capnp.c++)
  add_custom_command(
    OUTPUT ${WISP_SNAPSHOT_GEN}/${schema}.capnp.h ${src}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${WISP_SNAPSHOT_GEN}
    COMMAND ${CAPNP_EXECUTABLE} compile -o${CAPNPC_CXX_EXECUTABLE}:${WISP_SNAPSHOT_GEN}
            --src-prefix=${CMAKE_SOURCE_DIR}/snapshot ${CMAKE_SOURCE_DIR}/snapshot/${schema}.capnp
    DEPENDS ${CMAKE_SOURCE_DIR}/snapshot/${schema}.capnp
    COMMENT "capnp compile snapshot/${schema}.capnp"
    VERBATIM)
  list(APPEND WISP_SNAPSHOT_CAPNP_SRC ${src})
endforeach()
# Generated code is not ours to keep warning-free.
set_source_files_properties(${WISP_SNAPSHOT_CAPNP_SRC} PROPERTIES COMPILE_OPTIONS -w GENERATED ON)
