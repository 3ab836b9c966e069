# Tests of the store component: the SQLite store, the config file and the
# image store.
corral_test(NAME store_test
  SOURCES unit/store_test.cc
  LIBS corral::store SQLite::SQLite3
  LABELS unit store)

corral_test(NAME config_test
  SOURCES unit/config_test.cc
  LIBS corral::config
  LABELS unit config)

corral_test(NAME images_test
  SOURCES unit/images_test.cc
  LIBS corral::images corral::store LibArchive::LibArchive OpenSSL::Crypto
  LABELS unit images)

corral_test(NAME images_hostile_test
  SOURCES security/images_hostile_test.cc
  LIBS corral::images corral::store LibArchive::LibArchive
  LABELS security images)

# The OCI image tests write index.json, manifests and configs as JSON.
find_package(nlohmann_json 3 CONFIG REQUIRED)

corral_test(NAME images_oci_test
  SOURCES unit/images_oci_test.cc
  LIBS corral::images corral::store LibArchive::LibArchive OpenSSL::Crypto
    nlohmann_json::nlohmann_json
  LABELS unit images)

corral_test(NAME images_oci_hostile_test
  SOURCES security/images_oci_hostile_test.cc
  LIBS corral::images corral::store LibArchive::LibArchive OpenSSL::Crypto
    nlohmann_json::nlohmann_json
  LABELS security images)

# OCI images made by umoci and skopeo, through the real CLI and daemon.
if(TARGET corrald)
  corral_test(NAME images_oci_integration_test
    SOURCES integration/images_oci_cli_test.cc
    LIBS corral_daemon_harness
    LABELS integration images)
  target_compile_definitions(images_oci_integration_test PRIVATE
    CORRAL_BINARY_DIR="${CMAKE_BINARY_DIR}"
    CORRAL_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_dependencies(images_oci_integration_test corrald corral corral-agent)
  if(TARGET corral_linux_plugin)
    add_dependencies(images_oci_integration_test corral_linux_plugin)
  endif()
endif()
