// base/json: parsing with positioned errors, the typed getters' messages, the builder.
#include "base/json.h"

#include <catch2/catch.hpp>
#include <cstdint>

using namespace berth;

TEST_CASE("json: parses objects, arrays and scalars", "[base][json]") {
  auto doc = json::Doc::Parse(R"({"name":"web","count":3,"ok":true,"none":null,"list":[1,"two"]})");
  REQUIRE(doc.ok());
  json::View v = doc->view();
  CHECK(v.IsObject());
  CHECK(v.Size() == 5);
  CHECK(v.Get("name").String() == "web");
  CHECK(v.Get("count").Number() == 3);
  CHECK(v.Get("ok").Bool());
  CHECK(v.Get("none").IsNull());
  CHECK(v.Get("list").IsArray());
  CHECK(v.Get("list").Size() == 2);
  CHECK_FALSE(v.Get("absent").valid());
  CHECK_FALSE(v.Get("name").Get("x").valid());  // not an object
  CHECK(v.Get("Name").valid() == false);        // keys are case-sensitive

  std::vector<std::string> keys;
  for (json::View member : v) keys.emplace_back(member.Key());
  CHECK(keys == std::vector<std::string>{"name", "count", "ok", "none", "list"});
}

TEST_CASE("json: the text need not be NUL-terminated", "[base][json]") {
  std::string buf = R"({"a":1}garbage)";
  auto doc = json::Doc::Parse(std::string_view(buf.data(), 7));
  REQUIRE(doc.ok());
  CHECK(doc->view().Get("a").Number() == 1);
}

TEST_CASE("json: parse errors name byte, line and column", "[base][json]") {
  SECTION("a bad literal on the third line") {
    auto doc = json::Doc::Parse("{\n  \"a\": 1,\n  \"b\": tru\n}");
    REQUIRE_FALSE(doc.ok());
    CHECK(doc.error().kind == ErrorKind::kInvalid);
    CHECK(doc.error().code == "MalformedJSON");
    CHECK(doc.error().message == "malformed JSON at byte 19 (line 3, column 8)");
  }
  SECTION("trailing bytes after the value") {
    auto doc = json::Doc::Parse("{}  x");
    REQUIRE_FALSE(doc.ok());
    CHECK(doc.error().message == "malformed JSON at byte 4 (line 1, column 5)");
  }
  SECTION("trailing whitespace is fine") { CHECK(json::Doc::Parse("{} \r\n\t").ok()); }
  SECTION("an empty body") {
    auto doc = json::Doc::Parse("");
    REQUIRE_FALSE(doc.ok());
    CHECK(doc.error().message == "malformed JSON: the body is empty");
  }
  SECTION("a truncated document") {
    auto doc = json::Doc::Parse(R"({"a": [1, 2)");
    REQUIRE_FALSE(doc.ok());
    CHECK(doc.error().code == "MalformedJSON");
    CHECK_THAT(doc.error().message, Catch::StartsWith("malformed JSON at byte "));
    CHECK_THAT(doc.error().message, Catch::Contains("line 1"));
  }
}

TEST_CASE("json: typed getters name the field path", "[base][json]") {
  auto doc = json::Doc::Parse(R"({"s":"x","n":5,"f":1.5,"b":false,"z":null,"o":{}})");
  REQUIRE(doc.ok());
  json::View v = doc->view();

  SECTION("RequireString") {
    CHECK(json::RequireString(v, "s", "s").value() == "x");
    auto missing = json::RequireString(v, "name", "containerDefinitions[0].name");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().kind == ErrorKind::kInvalid);
    CHECK(missing.error().code == "InvalidParameter");
    CHECK(missing.error().message == "containerDefinitions[0].name: is required");
    auto null = json::RequireString(v, "z", "z");
    REQUIRE_FALSE(null.ok());
    CHECK(null.error().message == "z: is required");
    auto wrong = json::RequireString(v, "n", "spec.n");
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().message == "spec.n: must be a string, not a number");
    auto obj = json::RequireString(v, "o", "o");
    REQUIRE_FALSE(obj.ok());
    CHECK(obj.error().message == "o: must be a string, not an object");
  }
  SECTION("OptionalString") {
    CHECK(json::OptionalString(v, "absent", "absent", "dflt").value() == "dflt");
    CHECK(json::OptionalString(v, "z", "z", "dflt").value() == "dflt");
    CHECK(json::OptionalString(v, "s", "s").value() == "x");
    auto wrong = json::OptionalString(v, "b", "tags[2].b");
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().message == "tags[2].b: must be a string, not a boolean");
  }
  SECTION("OptionalInt") {
    CHECK(json::OptionalInt(v, "n", "n", 0).value() == 5);
    CHECK(json::OptionalInt(v, "absent", "absent", 42).value() == 42);
    auto frac = json::OptionalInt(v, "f", "cpu", 0);
    REQUIRE_FALSE(frac.ok());
    CHECK(frac.error().message == "cpu: must be a whole number");
    auto wrong = json::OptionalInt(v, "s", "memory", 0);
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().message == "memory: must be a number, not a string");
  }
  SECTION("OptionalBool") {
    CHECK(json::OptionalBool(v, "b", "b", true).value() == false);
    CHECK(json::OptionalBool(v, "absent", "absent", true).value() == true);
    auto wrong = json::OptionalBool(v, "s", "essential", false);
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().message == "essential: must be true or false, not a string");
  }
}

TEST_CASE("json: OptionalInt refuses numbers beyond 2^53", "[base][json]") {
  auto doc = json::Doc::Parse(R"({"big":1e300,"edge":9007199254740992})");
  REQUIRE(doc.ok());
  CHECK_FALSE(json::OptionalInt(doc->view(), "big", "big", 0).ok());
  CHECK(json::OptionalInt(doc->view(), "edge", "edge", 0).value() == 9007199254740992LL);
}

TEST_CASE("json: the builder makes objects and arrays", "[base][json]") {
  json::Doc d = json::Doc::Object();
  d.Set("name", "web")
      .Set("count", 3)
      .Set("big", int64_t{1700000000123})
      .Set("ratio", 0.5)
      .Set("ok", true)
      .SetNull("none")
      .Set("list", std::move(json::Doc::Array().Push("a").Push(json::Doc::Object().Set("k", "v"))));
  CHECK(d.Print() ==
        R"({"name":"web","count":3,"big":1700000000123,"ratio":0.5,"ok":true,"none":null,"list":["a",{"k":"v"}]})");

  SECTION("Set replaces a member of the same key") {
    d.Set("name", "api").Set("count", std::string("three"));
    CHECK(d.view().Size() == 7);
    CHECK(d.view().Get("name").String() == "api");
    CHECK(d.view().Get("count").String() == "three");
  }
  SECTION("printed text parses back to the same tree") {
    auto back = json::Doc::Parse(d.Print());
    REQUIRE(back.ok());
    CHECK(back->Print() == d.Print());
  }
  SECTION("Copy is deep") {
    json::Doc copy = json::Doc::Copy(d.view().Get("list"));
    d.Set("list", json::Doc::Array());
    CHECK(copy.Print() == R"(["a",{"k":"v"}])");
  }
  SECTION("strings are escaped") {
    json::Doc e = json::Doc::Object();
    e.Set("s", std::string_view("q\"b\\n\n\x01", 7));
    auto back = json::Doc::Parse(e.Print());
    REQUIRE(back.ok());
    CHECK(back->view().Get("s").String() == std::string_view("q\"b\\n\n\x01", 7));
  }
}

TEST_CASE("json: moved-from and empty docs", "[base][json]") {
  json::Doc a = json::Doc::Object();
  a.Set("x", 1);
  json::Doc b = std::move(a);
  CHECK_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  CHECK(b.valid());
  CHECK(json::View().Print() == "null");
  CHECK(json::View().TypeName() == std::string("nothing"));
}

TEST_CASE("json: AppendQuoted escapes quotes, backslashes and controls", "[base][json]") {
  std::string out;
  json::AppendQuoted(&out, std::string_view("a\"b\\c\nd\re\tf\x01g\x7f", 14));
  CHECK(out == "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\x7f\"");
  auto back = json::Doc::Parse(out);
  REQUIRE(back.ok());
  CHECK(back->view().String() == std::string_view("a\"b\\c\nd\re\tf\x01g\x7f", 14));
}

TEST_CASE("json: IntIn reads a number in range and never casts one out of it", "[base][json]") {
  json::Doc d =
      json::Doc::Parse(R"({"a":42.9,"b":-1,"big":1e300,"neg":-1e300,"s":"7","edge":9223372036854775807})").value();
  json::View v = d.view();
  CHECK(v.Get("a").IntIn(0, 100, -1) == 42);
  CHECK(v.Get("b").IntIn(0, 100, -7) == -7);
  CHECK(v.Get("big").IntIn(INT64_MIN, INT64_MAX, 5) == 5);
  CHECK(v.Get("neg").IntIn(INT64_MIN, INT64_MAX, 5) == 5);
  CHECK(v.Get("s").IntIn(0, 100, 3) == 3);
  CHECK(v.Get("missing").IntIn(0, 100, 3) == 3);
  CHECK(v.Get("edge").IntIn(0, INT64_MAX, 0) == INT64_MAX);
}
