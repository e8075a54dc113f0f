# Build glue for the libraries Berth uses. No third-party source is committed:
# everything comes from Debian's packages (see third_party/README.md).

set(BERTH_DEPS_DIR ${CMAKE_SOURCE_DIR}/.deps)

# llhttp: compiled from the C sources shipped in Debian's node-llhttp package.
set(LLHTTP_SRC_DIR /usr/share/llhttp)
set(LLHTTP_INCLUDE_DIR /usr/share/include/llhttp)
if(NOT EXISTS ${LLHTTP_SRC_DIR}/llhttp.c)
  message(FATAL_ERROR "llhttp sources missing (${LLHTTP_SRC_DIR}); run `make deps`")
endif()
add_library(llhttp STATIC ${LLHTTP_SRC_DIR}/llhttp.c ${LLHTTP_SRC_DIR}/api.c ${LLHTTP_SRC_DIR}/http.c)
target_include_directories(llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
set_target_properties(llhttp PROPERTIES C_STANDARD 99 POSITION_INDEPENDENT_CODE ON)
target_compile_options(llhttp PRIVATE -w)

# cJSON: Debian ships it only as a shared object, so it is compiled from Debian's
# source package, fetched into .deps/cjson by third_party/deps.sh.
if(NOT EXISTS ${BERTH_DEPS_DIR}/cjson/cJSON.c)
  message(FATAL_ERROR "cJSON source missing (${BERTH_DEPS_DIR}/cjson); run `make deps`")
endif()
add_library(cjson STATIC ${BERTH_DEPS_DIR}/cjson/cJSON.c)
target_include_directories(cjson SYSTEM PUBLIC ${BERTH_DEPS_DIR}/cjson)
set_target_properties(cjson PROPERTIES C_STANDARD 99)
target_compile_options(cjson PRIVATE -w)

# Debian's static archives.
find_library(UV_STATIC NAMES libuv_a.a REQUIRED)
find_library(SQLITE_STATIC NAMES libsqlite3.a REQUIRED)
find_library(MBEDTLS_STATIC NAMES libmbedtls.a REQUIRED)
find_library(MBEDX509_STATIC NAMES libmbedx509.a REQUIRED)
find_library(MBEDCRYPTO_STATIC NAMES libmbedcrypto.a REQUIRED)
# The Raft library (libraft-dev, on libuv) and the LZ4 it compresses snapshots with.
find_library(RAFT_STATIC NAMES libraft.a REQUIRED)
find_library(LZ4_STATIC NAMES liblz4.a REQUIRED)
# libyaml (libyaml-dev) parses compose files (src/compose/yaml.h).
find_library(YAML_STATIC NAMES libyaml.a REQUIRED)
find_package(Threads REQUIRED)

add_library(berth_deps INTERFACE)
target_link_libraries(berth_deps INTERFACE
  llhttp cjson ${YAML_STATIC} ${RAFT_STATIC} ${LZ4_STATIC} ${UV_STATIC} ${SQLITE_STATIC}
  ${MBEDTLS_STATIC} ${MBEDX509_STATIC} ${MBEDCRYPTO_STATIC}
  Threads::Threads ${CMAKE_DL_LIBS} m)
