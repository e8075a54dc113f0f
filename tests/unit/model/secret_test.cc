// model/secret: names, references, the key file's forms, sealing bound to the name.
#include "model/secret.h"

#include <catch2/catch.hpp>

#include "model/taskdef.h"

using namespace berth;

TEST_CASE("secret: names and references (names, secret ARNs, parameter ARNs)", "[model][secret]") {
  CHECK(model::ValidateSecretName("prod/db.password@1+x=y_z-"));
  CHECK(!model::ValidateSecretName(""));
  CHECK(!model::ValidateSecretName(std::string(513, 'a')));
  Status bad = model::ValidateSecretName("a b");
  REQUIRE(!bad);
  CHECK(bad.error().message ==
        "name: must be 1-512 characters of letters, digits and / _ + = . @ -; ' ' at position 1 "
        "is not allowed");
  CHECK(*model::SecretNameFromRef("db", "f") == "db");
  CHECK(*model::SecretNameFromRef("arn:aws:secretsmanager:eu-west-1:123:secret:team/db", "f") == "team/db");
  CHECK(*model::SecretNameFromRef("arn:aws:ssm:eu-west-1:123:parameter/team/db", "f") == "team/db");
  Result<std::string> s3 = model::SecretNameFromRef("arn:aws:s3:::bucket", "valueFrom");
  REQUIRE(!s3);
  CHECK(s3.error().message.starts_with("valueFrom: an ARN must name a secret"));
  CHECK(model::SecretArn("db") == "arn:aws:secretsmanager:local:000000000000:secret:db");
}

TEST_CASE("secret: key files as raw bytes, hex or base64; anything else is refused", "[model][secret]") {
  std::string raw(32, '\x01');
  Result<model::SecretBox> a = model::SecretBox::FromKeyText(raw, "k");
  REQUIRE(a);
  std::string hex;
  for (int i = 0; i < 32; i++) hex += "01";
  Result<model::SecretBox> h = model::SecretBox::FromKeyText(hex + "\n", "k");
  REQUIRE(h);
  CHECK(h->id() == a->id());
  Result<model::SecretBox> b64 = model::SecretBox::FromKeyText("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n", "k");
  REQUIRE(b64);
  CHECK(b64->id() == a->id());
  CHECK(a->id().size() == 16);
  Result<model::SecretBox> short_key = model::SecretBox::FromKeyText("abc", "key file /k");
  REQUIRE(!short_key);
  CHECK(short_key.error().message.find("key file /k: a secret key is 32 bytes, 64 hex digits or 44 base64") == 0);
  Result<model::SecretBox> not_hex = model::SecretBox::FromKeyText(std::string(63, '0') + "g", "k");
  REQUIRE(!not_hex);
  CHECK(not_hex.error().message == "k: not hex at position 63");
}

TEST_CASE("secret: sealed under the name; another key or a swapped name does not open", "[model][secret]") {
  model::SecretBox box = *model::SecretBox::FromKeyText(std::string(32, 'a'), "k");
  model::SecretBox other = *model::SecretBox::FromKeyText(std::string(32, 'b'), "k");
  Result<model::Secret> s = box.Seal("db", "hunter2");
  REQUIRE(s);
  CHECK(s->key_id == box.id());
  CHECK(*box.Open(*s) == "hunter2");
  Result<std::string> wrong = other.Open(*s);
  REQUIRE(!wrong);
  CHECK(wrong.error().message.find("secret db was sealed with key " + box.id()) == 0);
  model::Secret moved = *s;
  moved.name = "other";  // a row copied under another name
  Result<std::string> swapped = box.Open(moved);
  REQUIRE(!swapped);
  CHECK(swapped.error().message.find("altered") != std::string::npos);
}

TEST_CASE("secret: task definitions take secrets as environment or files, checked with their path",
          "[model][secret][taskdef]") {
  auto validate = [](std::string_view secrets) {
    std::string body = R"({"family":"f","containerDefinitions":[{"name":"c","image":"i","memory":8,
      "environment":[{"name":"A","value":"1"}],"secrets":)" +
                       std::string(secrets) + "}]}";
    Result<json::Doc> doc = json::Doc::Parse(body);
    REQUIRE(doc);
    return model::ValidateTaskDefinition(doc->view());
  };
  Result<json::Doc> ok = validate(R"([{"name":"DB","valueFrom":"db"},
      {"name":"key.pem","valueFrom":"arn:aws:secretsmanager:x:1:secret:tls","berthTarget":"file"}])");
  REQUIRE(ok);
  std::vector<model::SecretRef> refs = model::SecretRefs(ok->view());
  REQUIRE(refs.size() == 2);
  CHECK(refs[0].container == "c");
  CHECK(refs[0].name == "DB");
  CHECK(refs[0].secret == "db");
  CHECK(!refs[0].file);
  CHECK(refs[1].secret == "tls");
  CHECK(refs[1].file);
  struct Case {
    const char* secrets;
    const char* error;
  } cases[] = {
      {R"({"name":"A"})", "containerDefinitions[0].secrets: must be an array, not an object"},
      {R"([{"name":"A","valueFrom":"a"}])",
       "containerDefinitions[0].secrets[0].name: the variable A is set twice (in environment or secrets)"},
      {R"([{"name":"B"}])", "containerDefinitions[0].secrets[0].valueFrom: is required"},
      {R"([{"name":"B","valueFrom":"a","value":"x"}])", "containerDefinitions[0].secrets[0]"},
      {R"([{"name":"B=","valueFrom":"a"}])", "containerDefinitions[0].secrets[0].name: must be 1-255 characters"},
      {R"([{"name":"..","valueFrom":"a","berthTarget":"file"}])",
       "containerDefinitions[0].secrets[0].name: a secret file's name"},
      {R"([{"name":"a","valueFrom":"a","berthTarget":"file"},{"name":"a","valueFrom":"b","berthTarget":"file"}])",
       "containerDefinitions[0].secrets[1].name: the file a is given twice"},
      {R"([{"name":"B","valueFrom":"a b"}])", "containerDefinitions[0].secrets[0].valueFrom: must be 1-512"},
  };
  for (const Case& c : cases) {
    INFO(c.secrets);
    Result<json::Doc> r = validate(c.secrets);
    REQUIRE(!r);
    INFO(r.error().message);
    CHECK(r.error().message.find(c.error) == 0);
  }
}
