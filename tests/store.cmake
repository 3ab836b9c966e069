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
