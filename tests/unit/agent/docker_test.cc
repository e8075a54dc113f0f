// agent/docker: the pure parts of the Engine client — API version comparison,
// the multiplexed log format, JSON-lines splitting, image references.
#include "agent/docker.h"

#include <catch2/catch.hpp>
#include <vector>

#include "base/crypto.h"

using namespace berth;
using agent::docker::ParseImageRef;

TEST_CASE("docker: API versions compare as numbers", "[agent][docker]") {
  using agent::docker::CompareApiVersions;
  CHECK(CompareApiVersions("1.41", "1.41") == 0);
  CHECK(CompareApiVersions("1.9", "1.41") < 0);
  CHECK(CompareApiVersions("1.50", "1.41") > 0);
  CHECK(CompareApiVersions("2.0", "1.51") > 0);
  CHECK(CompareApiVersions(agent::docker::kMaxApiVersion, agent::docker::kMinApiVersion) > 0);
}

TEST_CASE("docker: log frames split correctly however the bytes arrive", "[agent][docker]") {
  auto frame = [](int stream, std::string payload) {
    std::string f(8, '\0');
    f[0] = static_cast<char>(stream);
    f[4] = static_cast<char>((payload.size() >> 24) & 0xff);
    f[5] = static_cast<char>((payload.size() >> 16) & 0xff);
    f[6] = static_cast<char>((payload.size() >> 8) & 0xff);
    f[7] = static_cast<char>(payload.size() & 0xff);
    return f + payload;
  };
  std::string big(70000, 'x');
  std::string all = frame(1, "out 1\n") + frame(2, "err 1\n") + frame(1, big) + frame(1, "");
  for (size_t step : {1, 3, 7, 8, 9, 4096, 100000}) {
    std::vector<std::pair<int, std::string>> got;
    agent::docker::LogDemuxer d([&](int s, std::string_view p) { got.emplace_back(s, std::string(p)); });
    for (size_t i = 0; i < all.size(); i += step) d.Feed(std::string_view(all).substr(i, step));
    REQUIRE(got.size() == 4);
    CHECK(got[0] == std::make_pair(1, std::string("out 1\n")));
    CHECK(got[1] == std::make_pair(2, std::string("err 1\n")));
    CHECK(got[2].second == big);
    CHECK(got[3].second.empty());
  }
}

TEST_CASE("docker: JSON lines split across pieces, CRLF and blank lines", "[agent][docker]") {
  std::vector<std::string> lines;
  agent::docker::LineSplitter s([&](std::string_view l) { lines.emplace_back(l); });
  s.Feed("{\"a\":1}\r\n{\"b\"");
  s.Feed(":2}\n\n{\"c\":");
  CHECK(lines == std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"});
  CHECK(s.buffered() == 5);
  s.Feed("3}\n");
  CHECK(lines.back() == "{\"c\":3}");
}

TEST_CASE("docker: a line over the bound is dropped, never held, and the next one is read", "[agent][docker]") {
  std::vector<std::string> lines;
  agent::docker::LineSplitter s([&](std::string_view l) { lines.emplace_back(l); }, 8);
  CHECK(s.Feed("short\n0123"));         // 4 bytes held
  CHECK_FALSE(s.Feed("456789abcdef"));  // 16 bytes without a newline: dropped
  CHECK(s.buffered() == 0);
  CHECK_FALSE(s.Feed(std::string(1000, 'x')));  // still inside it: nothing held
  CHECK(s.buffered() == 0);
  CHECK_FALSE(s.Feed("tail\nnext\n"));  // its end, then a good line
  CHECK(lines == std::vector<std::string>{"short", "next"});
  CHECK_FALSE(s.Feed("0123456789abc\nok\n"));  // a whole long line in one piece
  CHECK(lines.back() == "ok");
  CHECK(s.Feed("fine\n"));
}

TEST_CASE("docker: image references", "[agent][docker]") {
  auto r = ParseImageRef("busybox");
  CHECK(r.registry == "docker.io");
  CHECK(r.repository == "library/busybox");
  CHECK(r.tag == "latest");
  CHECK_FALSE(r.explicit_tag);
  r = ParseImageRef("127.0.0.1:7070/team/app:1.2");
  CHECK(r.registry == "127.0.0.1:7070");
  CHECK(r.repository == "team/app");
  CHECK(r.tag == "1.2");
  CHECK(r.explicit_tag);
  r = ParseImageRef("localhost/app@sha256:abcd");
  CHECK(r.registry == "localhost");
  CHECK(r.repository == "app");
  CHECK(r.digest == "sha256:abcd");
  CHECK(r.tag.empty());
  r = ParseImageRef("berth-test/busybox:1");
  CHECK(r.registry == "docker.io");
  CHECK(r.repository == "berth-test/busybox");
  CHECK(r.tag == "1");
}

TEST_CASE("docker: query escaping and X-Registry-Auth's base64url", "[agent][docker]") {
  CHECK(agent::docker::QueryEscape("a b/c:d") == "a%20b%2Fc%3Ad");
  CHECK(agent::docker::QueryEscape("{\"label\":[\"x=y\"]}") == "%7B%22label%22%3A%5B%22x%3Dy%22%5D%7D");
  CHECK(crypto::Base64Encode("") == "");
  CHECK(crypto::Base64Encode("f") == "Zg==");
  CHECK(crypto::Base64Encode("fo") == "Zm8=");
  CHECK(crypto::Base64Encode("foo") == "Zm9v");
  CHECK(crypto::Base64Encode("foobar") == "Zm9vYmFy");
  CHECK(crypto::Base64Encode("\xfb\xff", false) == "+/8=");
  CHECK(crypto::Base64Encode("\xfb\xff", true) == "-_8=");
  for (const std::string& text :
       std::vector<std::string>{"", "f", "fo", "foo", "user:pa:ss", std::string("\0\xff\x10", 3)}) {
    Result<std::string> back = crypto::Base64Decode(crypto::Base64Encode(text));
    REQUIRE(back);
    CHECK(*back == text);
  }
  CHECK(crypto::Base64Decode("Zm8").value() == "fo");  // padding optional
  CHECK_FALSE(crypto::Base64Decode("Z!==").ok());
}

TEST_CASE("docker: names for API paths are Docker's own, anything else refused with what and why",
          "[agent][docker][paths]") {
  using agent::docker::CheckImageName;
  using agent::docker::CheckObjectName;
  using agent::docker::CheckTarget;
  CHECK(CheckObjectName("container", "berth-0b1c2d-app"));
  CHECK(CheckObjectName("container", std::string(64, 'f')));  // an id
  CHECK(CheckObjectName("network", "berth-task.1_x"));
  for (const std::string& bad :
       std::vector<std::string>{"", "../images/x", "a/b", "x?force=1", "x&v=1", "a b", ".hidden", "-rf", "x#y", "x%2e",
                                std::string("x\0y", 3), "x\r\nHost: evil", std::string(256, 'a')}) {
    Status s = CheckObjectName("container", bad);
    CHECK_FALSE(s.ok());
    if (!s.ok()) {
      CHECK(s.error().kind == ErrorKind::kInvalid);
      CHECK_THAT(s.error().message, Catch::Contains("refusing the container name"));
    }
  }
  CHECK_THAT(CheckObjectName("container", "a/b").error().message, Catch::Contains("'/'"));

  for (const std::string& good :
       std::vector<std::string>{"busybox", "127.0.0.1:7070/team/app:1.2",
                                "registry.local/a/b@sha256:" + std::string(64, 'a'), "Repo_Tag-x.y:V1"}) {
    CHECK(CheckImageName(good));
  }
  for (const std::string& bad : std::vector<std::string>{"", "a/../../containers/x", "a//b", "/abs", "a/./b", "a?x=1",
                                                         "a b", "-x", "a/b/", "a#b", "a%2F..", std::string(513, 'a')}) {
    Status s = CheckImageName(bad);
    CHECK_FALSE(s.ok());
    if (!s.ok()) CHECK_THAT(s.error().message, Catch::Contains("refusing the image"));
  }

  CHECK(CheckTarget("/containers/json?all=1&filters=%7B%22label%22%7D"));
  CHECK(CheckTarget("/images/127.0.0.1:7070/app:1/json"));
  CHECK(CheckTarget("/version"));
  CHECK_FALSE(CheckTarget("containers/json").ok());
  CHECK_FALSE(CheckTarget("/containers/../images/x/json").ok());
  CHECK_FALSE(CheckTarget("/containers//json").ok());
  CHECK_FALSE(CheckTarget("/containers/a b/json").ok());
  CHECK_FALSE(CheckTarget("/containers/x/logs?tail=all#frag").ok());
  CHECK_FALSE(CheckTarget("/containers/x/logs?a=b c").ok());
  CHECK_FALSE(CheckTarget(std::string("/containers/x\n/json")).ok());
  CHECK_THAT(CheckTarget("/containers/../x").error().message, Catch::Contains("'..' path segment"));
}
