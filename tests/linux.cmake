# Tests of the linux component.
corral_test(NAME linux_core_test
  SOURCES unit/linux_core_test.cc
  LIBS corral::linux_core
  LABELS unit linux)

corral_test(NAME linux_backend_test
  SOURCES integration/linux_backend_test.cc
  LIBS corral::backend_proto corral::backend_abi corral::agent_proto corral::common ${CMAKE_DL_LIBS}
  LABELS integration linux)
add_dependencies(linux_backend_test corral_linux_plugin corral-agent)

corral_test(NAME linux_isolation_test
  SOURCES security/linux_isolation_test.cc
  LIBS corral::backend_proto corral::backend_abi corral::agent_proto corral::common ${CMAKE_DL_LIBS}
  LABELS security linux)
add_dependencies(linux_isolation_test corral_linux_plugin corral-agent)
