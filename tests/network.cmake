# Network tests. corral_fake_internet (integration/fake_internet.h) gives a
# test a private "internet" in network namespaces: DNS, HTTP, TLS and plain
# TCP servers on documentation addresses, and no route to a real one. It
# needs root, iproute2 and dnsmasq (Debian: dnsmasq-base) when it runs.
find_package(OpenSSL REQUIRED)
add_library(corral_fake_internet STATIC integration/fake_internet.cc)
target_link_libraries(corral_fake_internet
  PUBLIC corral::common OpenSSL::SSL OpenSSL::Crypto Threads::Threads)
corral_sanitize(corral_fake_internet)

# The fixture's self-test: what a test may rely on, checked from the host
# namespace.
corral_test(NAME fake_internet_test
  SOURCES integration/fake_internet_test.cc
  LIBS corral_fake_internet
  LABELS network)

