// The E2B gateway's parts that need no daemon: Connect's envelopes, codes
// and timeouts, the config file and keys, envd's paths and entries.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "client/e2b/config.h"
#include "client/e2b/connect.h"
#include "client/e2b/gateway.h"

namespace corral::e2b {
namespace {

namespace v1 = corral::v1;

TEST_CASE("Connect envelopes: framed, parsed, and bad ones refused") {
  const std::string frame = Envelope(0, R"({"path":"/x"})");
  REQUIRE(frame.size() == 5 + 13);
  CHECK(frame.substr(0, 5) == std::string("\0\0\0\0\x0d", 5));
  auto parsed = ParseStreamRequest(frame);
  REQUIRE(parsed.ok());
  CHECK((*parsed)["path"] == "/x");

  CHECK_FALSE(ParseStreamRequest("").ok());
  CHECK_FALSE(ParseStreamRequest(std::string("\0\0\0", 3)).ok());
  CHECK_FALSE(ParseStreamRequest(Envelope(kCompressedFlag, "{}")).ok());
  CHECK_FALSE(ParseStreamRequest(Envelope(kEndStreamFlag, "{}")).ok());
  CHECK_FALSE(ParseStreamRequest(frame + "x").ok());  // two messages
  CHECK_FALSE(ParseStreamRequest(Envelope(0, "{no")).ok());
  CHECK_FALSE(ParseStreamRequest(Envelope(0, "[1]")).ok());

  const std::string end = EndOfStream(ConnectError{"not_found", "gone"});
  CHECK(static_cast<uint8_t>(end[0]) == kEndStreamFlag);
  CHECK(end.substr(5) == R"({"error":{"code":"not_found","message":"gone"}})");
  CHECK(EndOfStream(std::nullopt).substr(5) == "{}");

  CHECK(ParseUnaryRequest("")->empty());
  CHECK_FALSE(ParseUnaryRequest("{").ok());
  CHECK_FALSE(ParseUnaryRequest("\"x\"").ok());
}

TEST_CASE("Connect codes, their HTTP statuses, and Connect-Timeout-Ms") {
  CHECK(ConnectCode(absl::StatusCode::kNotFound) == "not_found");
  CHECK(ConnectCode(absl::StatusCode::kCancelled) == "canceled");
  CHECK(ConnectCode(absl::StatusCode::kUnauthenticated) == "unauthenticated");
  CHECK(HttpStatusOf("invalid_argument") == 400);
  CHECK(HttpStatusOf("failed_precondition") == 400);
  CHECK(HttpStatusOf("not_found") == 404);
  CHECK(HttpStatusOf("already_exists") == 409);
  CHECK(HttpStatusOf("unimplemented") == 501);
  CHECK(HttpStatusOf("unavailable") == 503);
  CHECK(HttpStatusOf("unauthenticated") == 401);
  CHECK(HttpStatusOf("deadline_exceeded") == 504);
  CHECK(HttpStatusOf("internal") == 500);

  CHECK(ParseTimeout("")->has_value() == false);
  CHECK(**ParseTimeout("1500") == absl::Milliseconds(1500));
  CHECK_FALSE(ParseTimeout("-1").ok());
  CHECK_FALSE(ParseTimeout("12345678901").ok());
  CHECK_FALSE(ParseTimeout("1s").ok());
}

TEST_CASE("API keys have the form E2B's SDKs send") {
  CHECK(ValidateApiKey("e2b_0123456789abcdef0123").ok());
  CHECK_FALSE(ValidateApiKey("e2b_0123456789abcdef012").ok());  // 19 digits
  CHECK_FALSE(ValidateApiKey("e2b_0123456789ABCDEF0123").ok());
  CHECK_FALSE(ValidateApiKey("0123456789abcdef0123456789").ok());
  CHECK_FALSE(ValidateApiKey("e2b_0123456789abcdef012x").ok());
  CHECK_FALSE(ValidateApiKey("").ok());
}

TEST_CASE(
    "the gateway's config file: templates, keys and limits; any "
    "unknown or bad value refused with its name") {
  char dir[] = "/tmp/corral-e2b-config-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string path = std::string(dir) + "/e2b.toml";
  const auto load = [&](const std::string& text, Config& config) {
    std::ofstream(path) << text;
    return LoadConfigFile(path, config);
  };
  Config config = DefaultConfig();
  REQUIRE(config.templates.at("base").image == "e2b-base");
  auto ok = load(
      "api_keys = [\"e2b_0123456789abcdef0123\"]\n"
      "default_timeout_seconds = 60\nmax_upload_mib = 4\nthreads = 8\n"
      "[templates.py]\nimage = \"debian\"\nruntime = \"qemu\"\n"
      "memory_mib = 1024\nuser = \"dev\"\nworkdir = \"/workspace\"\n",
      config);
  INFO(ok.message());
  REQUIRE(ok.ok());
  CHECK(config.api_keys ==
        std::vector<std::string>{"e2b_0123456789abcdef0123"});
  CHECK(config.default_timeout_seconds == 60);
  CHECK(config.max_upload_bytes == 4u << 20);
  CHECK(config.threads == 8);
  CHECK(config.templates.at("py").runtime == "qemu");
  CHECK(config.templates.at("py").memory_mib == 1024);
  CHECK(config.templates.at("py").user == "dev");
  CHECK(config.templates.at("base").image == "e2b-base");

  struct Bad {
    const char* text;
    const char* says;
  };
  for (const Bad& bad : {
           Bad{"api_keys = [\"nope\"]\n", "api_keys"},
           Bad{"api_key = \"x\"\n", "unknown key api_key"},
           Bad{"threads = 2\n", "threads"},
           Bad{"max_upload_mib = -1\n", "max_upload_mib"},
           Bad{"[templates.x]\nimage = 3\n", "templates.x.image"},
           Bad{"[templates.x]\nram = 3\n", "unknown key templates.x.ram"},
           Bad{"[templates.x]\nworkdir = \"rel\"\n", "templates.x.workdir"},
           Bad{"[templates.x]\nuser = \"Bad User\"\n", "templates.x.user"},
           Bad{"not toml ===\n", path.c_str()},
       }) {
    Config c = DefaultConfig();
    auto s = load(bad.text, c);
    INFO(bad.text << " -> " << s.message());
    CHECK_FALSE(s.ok());
    CHECK(std::string(s.message()).find(bad.says) != std::string::npos);
  }
  CHECK_FALSE(LoadConfigFile(std::string(dir) + "/missing.toml", config).ok());
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST_CASE("envd's paths: the workdir, the home, and no escape above /") {
  const auto resolve = [](const std::string& path) {
    auto r = ResolveEnvdPath(path, "/home/user", "/work");
    return r.ok() ? *r : "error: " + std::string(r.status().message());
  };
  CHECK(resolve("") == "/work");
  CHECK(resolve("~") == "/home/user");
  CHECK(resolve("~/a/b") == "/home/user/a/b");
  CHECK(resolve("a/./b/") == "/home/user/a/b");
  CHECK(resolve("/tmp/x") == "/tmp/x");
  CHECK(resolve("../../../../etc/passwd") == "/etc/passwd");
  CHECK(resolve("/a/../../b") == "/b");
  CHECK(resolve("//x//y") == "/x/y");
  CHECK(resolve("~root/x").rfind("error:", 0) == 0);
  CHECK(resolve(std::string("a\0b", 3)).rfind("error:", 0) == 0);
}

TEST_CASE("envd's entries: Go's permission strings and proto3 JSON") {
  CHECK(PermissionString(v1::FILE_TYPE_REGULAR, 0644) == "-rw-r--r--");
  CHECK(PermissionString(v1::FILE_TYPE_DIRECTORY, 0755) == "drwxr-xr-x");
  CHECK(PermissionString(v1::FILE_TYPE_SYMLINK, 0777) == "Lrwxrwxrwx");
  CHECK(PermissionString(v1::FILE_TYPE_REGULAR, 04750) == "-rwxr-x---");
  v1::FileInfo info;
  info.set_type(v1::FILE_TYPE_REGULAR);
  info.set_size(uint64_t{1} << 40);
  info.set_mode(0600);
  info.mutable_modified_at()->set_seconds(1700000000);
  const Json entry = EntryJson(info, "/home/user/a.txt");
  CHECK(entry["name"] == "a.txt");
  CHECK(entry["type"] == "FILE_TYPE_FILE");
  CHECK(entry["size"] == "1099511627776");  // int64 travels as a string
  CHECK(entry["mode"] == 0600);
  CHECK(entry["modifiedTime"] == "2023-11-14T22:13:20Z");
  CHECK_FALSE(entry.contains("symlinkTarget"));
  info.set_type(v1::FILE_TYPE_SYMLINK);
  info.set_link_target("/workspace");
  CHECK(EntryJson(info, "/home/user")["symlinkTarget"] == "/workspace");
}

}  // namespace
}  // namespace corral::e2b
