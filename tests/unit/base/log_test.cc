// base/log: logfmt value quoting and level parsing.
#include "base/log.h"

#include <catch2/catch.hpp>

using namespace berth;

namespace {

std::string Value(std::string_view v) {
  std::string out;
  log::AppendValue(&out, v);
  return out;
}

}  // namespace

TEST_CASE("log: plain values are written bare", "[base][log]") {
  CHECK(Value("hello") == "hello");
  CHECK(Value("127.0.0.1:7070") == "127.0.0.1:7070");
  CHECK(Value("/v1/clusters/{name}") == "/v1/clusters/{name}");
}

TEST_CASE("log: values that need it are quoted and escaped", "[base][log]") {
  CHECK(Value("") == "\"\"");
  CHECK(Value("two words") == "\"two words\"");
  CHECK(Value("a=b") == "\"a=b\"");
  CHECK(Value("say \"hi\"") == "\"say \\\"hi\\\"\"");
  CHECK(Value("back\\slash") == "\"back\\\\slash\"");
  CHECK(Value("line\nbreak") == "\"line\\nbreak\"");
  CHECK(Value("cr\rtab\t") == "\"cr\\rtab\\t\"");
  CHECK(Value(std::string_view("nul\0x", 5)) == "\"nul\\u0000x\"");
  CHECK(Value("\x1b[31m") == "\"\\u001b[31m\"");
}

TEST_CASE("log: a quoted value never lets a line break through", "[base][log]") {
  std::string out = Value("evil\nts=0 level=error msg=forged");
  CHECK(out.find('\n') == std::string::npos);
}

TEST_CASE("log: levels parse and filter", "[base][log]") {
  log::Level l = log::Level::kInfo;
  CHECK(log::ParseLevel("debug", &l));
  CHECK(l == log::Level::kDebug);
  CHECK(log::ParseLevel("error", &l));
  CHECK(l == log::Level::kError);
  CHECK_FALSE(log::ParseLevel("loud", &l));
  CHECK(l == log::Level::kError);

  log::SetLevel(log::Level::kWarn);
  CHECK_FALSE(log::Enabled(log::Level::kInfo));
  CHECK(log::Enabled(log::Level::kWarn));
  CHECK(log::Enabled(log::Level::kError));
  log::SetLevel(log::Level::kError);  // the runner's default
}
