# Tests of the oci runtime (backends/oci).
corral_test(NAME oci_config_test
  SOURCES unit/oci_config_test.cc
  LIBS corral_oci_core PkgConfig::SECCOMP
  LABELS unit oci)

corral_test(NAME oci_backend_test
  SOURCES integration/oci_backend_test.cc
  LIBS corral::backend_proto corral::backend_abi corral::agent_proto corral::common ${CMAKE_DL_LIBS}
  LABELS integration oci)
add_dependencies(oci_backend_test corral_oci_plugin corral-agent)
