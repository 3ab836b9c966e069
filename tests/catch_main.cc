#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <cstdlib>

namespace {

// Code under test that reads archives runs the build's decoder
// (daemon/images/tar_stream.h), as corrald does beside itself.
const bool kDecoderSet = [] {
  ::setenv("CORRAL_UNPACK", CORRAL_BINARY_DIR "/bin/corral-unpack", 0);
  return true;
}();

}  // namespace
