// base/flags: command-line parsing, durations, sizes and counts.
#include "base/flags.h"

#include <catch2/catch.hpp>

using namespace berth;
using flags::FlagSpec;

namespace {

const std::vector<FlagSpec> kSpecs = {
    {"data", true, "DIR", "where state lives"},
    {"listen", true, "ADDR", "address to listen on"},
    {"verbose", false, "", "log more"},
};

}  // namespace

TEST_CASE("flags: values, booleans and positional arguments", "[base][flags]") {
  auto p = flags::ParseFlags({"run", "--data", "/d", "--listen=:7070", "--verbose", "extra"}, kSpecs);
  REQUIRE(p.ok());
  CHECK(p->Get("data") == "/d");
  CHECK(p->Get("listen") == ":7070");
  CHECK(p->Get("verbose") == "true");
  CHECK(p->Has("verbose"));
  CHECK(p->positional == std::vector<std::string>{"run", "extra"});
  CHECK_FALSE(p->help);
  CHECK(p->Get("absent", "fallback") == "fallback");
}

TEST_CASE("flags: -- ends the flags, - alone is positional", "[base][flags]") {
  auto p = flags::ParseFlags({"--", "--data", "-"}, kSpecs);
  REQUIRE(p.ok());
  CHECK(p->positional == std::vector<std::string>{"--data", "-"});
  CHECK(p->values.empty());
}

TEST_CASE("flags: help", "[base][flags]") {
  CHECK(flags::ParseFlags({"-h"}, kSpecs)->help);
  CHECK(flags::ParseFlags({"--help"}, kSpecs)->help);
  std::string help = flags::FlagsHelp(kSpecs);
  CHECK_THAT(help, Catch::Contains("--data DIR"));
  CHECK_THAT(help, Catch::Contains("where state lives"));
  CHECK_THAT(help, Catch::Contains("--verbose"));
}

TEST_CASE("flags: boolean =true and =false", "[base][flags]") {
  auto t = flags::ParseFlags({"--verbose=true"}, kSpecs);
  REQUIRE(t.ok());
  CHECK(t->Has("verbose"));
  auto f = flags::ParseFlags({"--verbose=false"}, kSpecs);
  REQUIRE(f.ok());
  CHECK_FALSE(f->Has("verbose"));
}

TEST_CASE("flags: errors name the flag", "[base][flags]") {
  auto unknown = flags::ParseFlags({"--nope"}, kSpecs);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message == "unknown flag --nope");
  auto single = flags::ParseFlags({"-d"}, kSpecs);
  REQUIRE_FALSE(single.ok());
  CHECK(single.error().message == "unknown flag -d (flags are written --name)");
  auto no_value = flags::ParseFlags({"--data"}, kSpecs);
  REQUIRE_FALSE(no_value.ok());
  CHECK(no_value.error().message == "flag --data needs a value");
  auto bool_value = flags::ParseFlags({"--verbose=yes"}, kSpecs);
  REQUIRE_FALSE(bool_value.ok());
  CHECK(bool_value.error().message == "flag --verbose takes no value");
}

TEST_CASE("flags: durations", "[base][flags]") {
  CHECK(flags::ParseDuration("250", "t").value() == 250);
  CHECK(flags::ParseDuration("250ms", "t").value() == 250);
  CHECK(flags::ParseDuration("10s", "t").value() == 10000);
  CHECK(flags::ParseDuration("2m", "t").value() == 120000);
  CHECK(flags::ParseDuration("1h", "t").value() == 3600000);
  CHECK(flags::ParseDuration("0s", "t").value() == 0);

  auto unit = flags::ParseDuration("5d", "grace");
  REQUIRE_FALSE(unit.ok());
  CHECK(unit.error().message == "--grace: unknown duration unit 'd' (use ms, s, m or h)");
  auto nan = flags::ParseDuration("soon", "grace");
  REQUIRE_FALSE(nan.ok());
  CHECK(nan.error().message == "--grace: expected a number, got 'soon'");
  CHECK_FALSE(flags::ParseDuration("", "grace").ok());
  CHECK_FALSE(flags::ParseDuration("-1s", "grace").ok());
  CHECK_FALSE(flags::ParseDuration("99999999999999999999999", "grace").ok());
}

TEST_CASE("flags: sizes", "[base][flags]") {
  CHECK(flags::ParseSize("4096", "s").value() == 4096);
  CHECK(flags::ParseSize("4096B", "s").value() == 4096);
  CHECK(flags::ParseSize("16KiB", "s").value() == 16 * 1024);
  CHECK(flags::ParseSize("16K", "s").value() == 16 * 1024);
  CHECK(flags::ParseSize("1MiB", "s").value() == 1 << 20);
  CHECK(flags::ParseSize("2GiB", "s").value() == uint64_t{2} << 30);
  auto unit = flags::ParseSize("1TB", "max-body");
  REQUIRE_FALSE(unit.ok());
  CHECK(unit.error().message == "--max-body: unknown size unit 'TB' (use KiB, MiB or GiB)");
}

TEST_CASE("flags: counts", "[base][flags]") {
  CHECK(flags::ParseCount("10000", "max-connections").value() == 10000);
  auto bad = flags::ParseCount("10k", "max-connections");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "--max-connections: expected a whole number, got '10k'");
}

TEST_CASE("flags: a number that overflows with its unit is refused, not wrapped", "[base][flags]") {
  auto size = flags::ParseSize("17179869184GiB", "max-body");  // 2^34 GiB = 2^64 bytes
  REQUIRE_FALSE(size.ok());
  CHECK(size.error().message == "--max-body: number too large: 17179869184GiB");
  CHECK_FALSE(flags::ParseSize("18014398509481984KiB", "s").ok());
  CHECK(flags::ParseSize("17179869183GiB", "s").value() == uint64_t{17179869183} << 30);
  auto duration = flags::ParseDuration("5124095576030432h", "grace");
  REQUIRE_FALSE(duration.ok());
  CHECK(duration.error().message == "--grace: number too large: 5124095576030432h");
}

TEST_CASE("flags: repeated NAME=VALUE", "[base][flags]") {
  auto kv = flags::ParseKeyValues({"zone=a", "disk=ssd", "zone=b", "empty="}, "attr");
  REQUIRE(kv);
  CHECK(kv.value() == std::map<std::string, std::string>{{"zone", "b"}, {"disk", "ssd"}, {"empty", ""}});
  auto bad = flags::ParseKeyValues({"zone=a", "=x"}, "attr");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "--attr =x: expected NAME=VALUE");
  CHECK_FALSE(flags::ParseKeyValues({"novalue"}, "attr"));
}
