// Unit tests of the docker runtime's HTTP client: a fake engine on a Unix
// socket in a temporary directory answers with canned bytes, and the client
// must decode the good ones and refuse truncated, oversized and garbage
// answers.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "backends/docker/engine.h"
#include "backends/docker/http_client.h"
#include "corral/unique_fd.h"

namespace dk = corral::docker;
using corral::UniqueFd;

namespace {

// Accepts one connection, reads the request head (and a body it announces
// with Content-Length or chunked framing), then writes `answer` and closes.
class FakeEngine {
 public:
  explicit FakeEngine(std::string answer, bool close_early = false)
      : answer_(std::move(answer)), close_early_(close_early) {
    char base[] = "/tmp/corral-docker-http-XXXXXX";
    REQUIRE(mkdtemp(base) != nullptr);
    dir_ = base;
    path_ = dir_ + "/engine.sock";
    listener_.Reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s",
                  path_.c_str());
    REQUIRE(bind(listener_.get(), reinterpret_cast<sockaddr*>(&address),
                 sizeof(address)) == 0);
    REQUIRE(listen(listener_.get(), 4) == 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeEngine() {
    thread_.join();
    std::filesystem::remove_all(dir_);
  }

  const std::string& path() const { return path_; }
  // What the client sent (head and body, raw).
  std::string request() {
    thread_.join();
    thread_ = std::thread([] {});
    return request_;
  }

 private:
  void Serve() {
    UniqueFd connection(accept(listener_.get(), nullptr, nullptr));
    if (!connection) return;
    char buffer[65536];
    // Read until the request is complete: the head, then either
    // Content-Length bytes or a chunked body ending in "0\r\n\r\n".
    for (;;) {
      if (close_early_ && request_.find("\r\n\r\n") != std::string::npos) {
        break;
      }
      size_t head_end = request_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        std::string head = request_.substr(0, head_end);
        size_t body_size = request_.size() - head_end - 4;
        auto length_at = head.find("Content-Length: ");
        if (head.find("Transfer-Encoding: chunked") != std::string::npos) {
          if (request_.size() >= 5 &&
              request_.compare(request_.size() - 5, 5, "0\r\n\r\n") == 0) {
            break;
          }
        } else if (length_at != std::string::npos) {
          size_t length = std::stoul(head.substr(length_at + 16));
          if (body_size >= length) break;
        } else {
          break;
        }
      }
      ssize_t n = read(connection.get(), buffer, sizeof(buffer));
      if (n <= 0) break;
      request_.append(buffer, static_cast<size_t>(n));
    }
    size_t written = 0;
    while (written < answer_.size()) {
      ssize_t n = send(connection.get(), answer_.data() + written,
                       answer_.size() - written, MSG_NOSIGNAL);
      if (n <= 0) break;
      written += static_cast<size_t>(n);
    }
  }

  std::string answer_;
  bool close_early_;
  std::string dir_;
  std::string path_;
  UniqueFd listener_;
  std::thread thread_;
  std::string request_;
};

dk::HttpLimits SmallLimits() {
  dk::HttpLimits limits;
  limits.max_header_bytes = 1024;
  limits.max_body_bytes = 4096;
  limits.timeout = absl::Seconds(5);
  return limits;
}

}  // namespace

TEST_CASE("docker http reads a Content-Length answer and sends the request",
          "[docker][unit]") {
  FakeEngine engine(
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
      "Content-Length: 13\r\n\r\n{\"Id\":\"abc\"}\n");
  dk::HttpClient client(engine.path(), SmallLimits());
  auto response = client.Request("POST", "/v1.41/containers/create?name=x",
                                 "{\"Image\":\"i\"}");
  REQUIRE(response.ok());
  CHECK(response->status == 201);
  CHECK(response->headers.at("content-type") == "application/json");
  CHECK(response->body == "{\"Id\":\"abc\"}\n");
  std::string request = engine.request();
  CHECK(request.rfind("POST /v1.41/containers/create?name=x HTTP/1.1\r\n", 0) ==
        0);
  CHECK(request.find("Content-Length: 13\r\n") != std::string::npos);
  CHECK(request.find("Content-Type: application/json\r\n") !=
        std::string::npos);
  CHECK(request.substr(request.size() - 13) == "{\"Image\":\"i\"}");
}

TEST_CASE("docker http decodes chunked answers with extensions and trailers",
          "[docker][unit]") {
  FakeEngine engine(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n"
      "1;ext=1\r\n \r\n"
      "A\r\n0123456789\r\n"
      "0\r\nX-Trailer: yes\r\n\r\n");
  dk::HttpClient client(engine.path(), SmallLimits());
  auto response = client.Request("GET", "/v1.41/info");
  REQUIRE(response.ok());
  CHECK(response->status == 200);
  CHECK(response->body == "hello 0123456789");
}

TEST_CASE("docker http skips 100 Continue and reads to EOF without length",
          "[docker][unit]") {
  FakeEngine engine(
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close");
  dk::HttpClient client(engine.path(), SmallLimits());
  auto response = client.Request("GET", "/_ping");
  REQUIRE(response.ok());
  CHECK(response->status == 200);
  CHECK(response->body == "body until close");
}

TEST_CASE("docker http refuses truncated answers", "[docker][unit]") {
  SECTION("Content-Length longer than the body") {
    FakeEngine engine("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
    dk::HttpClient client(engine.path(), SmallLimits());
    auto response = client.Request("GET", "/x");
    CHECK(absl::IsUnavailable(response.status()));
  }
  SECTION("chunked body without its last chunk") {
    FakeEngine engine(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    dk::HttpClient client(engine.path(), SmallLimits());
    CHECK_FALSE(client.Request("GET", "/x").ok());
  }
  SECTION("headers cut off") {
    FakeEngine engine("HTTP/1.1 200 OK\r\nContent-Le");
    dk::HttpClient client(engine.path(), SmallLimits());
    CHECK_FALSE(client.Request("GET", "/x").ok());
  }
  SECTION("nothing at all") {
    FakeEngine engine("");
    dk::HttpClient client(engine.path(), SmallLimits());
    CHECK_FALSE(client.Request("GET", "/x").ok());
  }
}

TEST_CASE("docker http refuses oversized answers", "[docker][unit]") {
  SECTION("Content-Length above the limit") {
    FakeEngine engine("HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n");
    dk::HttpClient client(engine.path(), SmallLimits());
    CHECK(absl::IsResourceExhausted(client.Request("GET", "/x").status()));
  }
  SECTION("chunks adding up beyond the limit") {
    std::string answer =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 5; ++i) {
      answer += "400\r\n" + std::string(1024, 'x') + "\r\n";
    }
    answer += "0\r\n\r\n";
    FakeEngine engine(answer);
    dk::HttpClient client(engine.path(), SmallLimits());
    CHECK(absl::IsResourceExhausted(client.Request("GET", "/x").status()));
  }
  SECTION("a body until EOF beyond the limit") {
    FakeEngine engine("HTTP/1.1 200 OK\r\n\r\n" + std::string(5000, 'y'));
    dk::HttpClient client(engine.path(), SmallLimits());
    CHECK(absl::IsResourceExhausted(client.Request("GET", "/x").status()));
  }
  SECTION("a header block beyond the limit") {
    FakeEngine engine("HTTP/1.1 200 OK\r\nX-Big: " + std::string(2000, 'z') +
                      "\r\n\r\n");
    dk::HttpClient client(engine.path(), SmallLimits());
    CHECK(absl::IsResourceExhausted(client.Request("GET", "/x").status()));
  }
}

TEST_CASE("docker http refuses garbage", "[docker][unit]") {
  const char* answers[] = {
      "SSH-2.0-OpenSSH\r\n\r\n",
      "HTTP/1.1 2x0 OK\r\n\r\n",
      "HTTP/2 200\r\n\r\n",
      "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
  };
  for (const char* answer : answers) {
    INFO(answer);
    FakeEngine engine(answer);
    dk::HttpClient client(engine.path(), SmallLimits());
    auto response = client.Request("GET", "/x");
    CHECK_FALSE(response.ok());
  }
}

TEST_CASE("docker http times out on a silent engine", "[docker][unit]") {
  char base[] = "/tmp/corral-docker-http-XXXXXX";
  REQUIRE(mkdtemp(base) != nullptr);
  std::string path = std::string(base) + "/silent.sock";
  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  REQUIRE(bind(listener.get(), reinterpret_cast<sockaddr*>(&address),
               sizeof(address)) == 0);
  REQUIRE(listen(listener.get(), 4) == 0);
  dk::HttpLimits limits = SmallLimits();
  limits.timeout = absl::Milliseconds(200);
  dk::HttpClient client(path, limits);
  auto started = absl::Now();
  auto response = client.Request("GET", "/x");
  CHECK(absl::IsDeadlineExceeded(response.status()));
  CHECK(absl::Now() - started < absl::Seconds(3));
  std::filesystem::remove_all(base);
}

TEST_CASE("docker http streams a chunked request body", "[docker][unit]") {
  FakeEngine engine(
      "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
      "{\"status\":\"sha256:0123\"}\n{}\n\n\n");
  dk::HttpClient client(engine.path(), SmallLimits());
  auto response = client.RequestStreaming(
      "POST", "/v1.41/images/create?fromSrc=-", "application/x-tar",
      [](const dk::BodyWriter& write) -> absl::Status {
        if (auto s = write("first"); !s.ok()) return s;
        if (auto s = write(""); !s.ok()) return s;  // sends nothing
        return write(std::string(300, 'b'));
      },
      SmallLimits());
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  CHECK(response->status == 200);
  CHECK(response->body.size() == 30);
  std::string request = engine.request();
  CHECK(request.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(request.find("Content-Length") == std::string::npos);
  std::string body = request.substr(request.find("\r\n\r\n") + 4);
  CHECK(body ==
        "5\r\nfirst\r\n12c\r\n" + std::string(300, 'b') + "\r\n0\r\n\r\n");
}

TEST_CASE("docker http returns an early error answer during a stream",
          "[docker][unit]") {
  FakeEngine engine(
      "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 18\r\n\r\n"
      "{\"message\":\"no\"}\n\n",
      /*close_early=*/true);
  dk::HttpClient client(engine.path(), SmallLimits());
  auto response = client.RequestStreaming(
      "POST", "/v1.41/images/create", "application/x-tar",
      [](const dk::BodyWriter& write) -> absl::Status {
        // Far more than the socket buffers: the engine stopped reading.
        std::string block(64 * 1024, 'x');
        for (int i = 0; i < 200; ++i) {
          if (auto s = write(block); !s.ok()) return s;
        }
        return absl::OkStatus();
      },
      SmallLimits());
  REQUIRE(response.ok());
  CHECK(response->status == 500);
  CHECK(dk::EngineMessage(*response) == "no");
}

TEST_CASE("docker http refuses request targets with spaces or controls",
          "[docker][unit]") {
  dk::HttpClient client("/nonexistent/socket", SmallLimits());
  CHECK(absl::IsInvalidArgument(
      client.Request("GET", "/x HTTP/1.1\r\nEvil: 1").status()));
  CHECK(absl::IsInvalidArgument(client.Request("GET", "x").status()));
  // A missing engine is UNAVAILABLE, naming the socket.
  auto missing = client.Request("GET", "/_ping");
  CHECK(absl::IsUnavailable(missing.status()));
  CHECK(std::string(missing.status().message()).find("/nonexistent/socket") !=
        std::string::npos);
}

TEST_CASE("docker log streams are demultiplexed", "[docker][unit]") {
  std::string stream;
  auto frame = [&](char kind, const std::string& payload) {
    stream.push_back(kind);
    stream.append(3, '\0');
    uint32_t size = static_cast<uint32_t>(payload.size());
    for (int shift = 24; shift >= 0; shift -= 8) {
      stream.push_back(static_cast<char>((size >> shift) & 0xff));
    }
    stream += payload;
  };
  frame(1, "out line\n");
  frame(2, "err line\n");
  CHECK(dk::DemultiplexLogs(stream) == "out line\nerr line\n");
  // Not a multiplexed stream (a TTY container): as is.
  CHECK(dk::DemultiplexLogs("plain text\n") == "plain text\n");
  // A frame claiming more than there is: as is, never a read past the end.
  std::string bad = stream.substr(0, stream.size() - 3);
  CHECK(dk::DemultiplexLogs(bad) == bad);
}

TEST_CASE("docker url encoding keeps only unreserved characters",
          "[docker][unit]") {
  CHECK(dk::UrlEncode("a-Z_0.~") == "a-Z_0.~");
  CHECK(dk::UrlEncode("{\"label\":[\"a=b\"]}") ==
        "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D");
  CHECK(dk::UrlEncode("x y&z") == "x%20y%26z");
}
