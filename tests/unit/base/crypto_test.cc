// base/crypto: SHA-256 and HMAC-SHA256 known vectors, token shape, random strings,
// constant-time comparison.
#include "base/crypto.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>

using namespace berth;

TEST_CASE("crypto: SHA-256 known vectors (FIPS 180-2)", "[base][crypto]") {
  CHECK(crypto::Hex(crypto::Sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(crypto::Hex(crypto::Sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(crypto::Hex(crypto::Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("crypto: streamed SHA-256 matches the one-shot digest", "[base][crypto]") {
  std::string million(1000000, 'a');
  crypto::Sha256Stream s;
  // Uneven pieces, crossing the 64-byte block boundary in every way.
  size_t off = 0, step = 1;
  while (off < million.size()) {
    size_t n = std::min(step, million.size() - off);
    s.Update(std::string_view(million).substr(off, n));
    off += n;
    step = step * 3 % 1009 + 1;
  }
  CHECK(crypto::Hex(s.Finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK(crypto::Sha256(million) == crypto::Sha256(million));
}

TEST_CASE("crypto: Hex", "[base][crypto]") {
  const uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff};
  CHECK(crypto::Hex(bytes, sizeof bytes) == "000fa5ff");
  CHECK(crypto::Hex(bytes, 0).empty());
}

TEST_CASE("crypto: tokens are the prefix and 43 URL-safe characters", "[base][crypto]") {
  std::set<std::string> seen;
  for (int i = 0; i < 50; i++) {
    auto t = crypto::NewToken("brt_");
    REQUIRE(t.ok());
    REQUIRE(t->size() == 4 + 43);
    CHECK(t->rfind("brt_", 0) == 0);
    for (char c : t->substr(4)) {
      bool url_safe =
          (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      CHECK(url_safe);
    }
    seen.insert(t.value());
  }
  CHECK(seen.size() == 50);
}

TEST_CASE("crypto: RandomBytes fills the buffer", "[base][crypto]") {
  std::array<uint8_t, 64> a{}, b{};
  REQUIRE(crypto::RandomBytes(a.data(), a.size()).ok());
  REQUIRE(crypto::RandomBytes(b.data(), b.size()).ok());
  CHECK(a != b);
}

TEST_CASE("crypto: ConstantTimeEqual", "[base][crypto]") {
  CHECK(crypto::ConstantTimeEqual("", ""));
  CHECK(crypto::ConstantTimeEqual("secret", "secret"));
  CHECK_FALSE(crypto::ConstantTimeEqual("secret", "secreT"));
  CHECK_FALSE(crypto::ConstantTimeEqual("secret", "secret2"));
  CHECK_FALSE(crypto::ConstantTimeEqual("", "x"));
  CHECK_FALSE(crypto::ConstantTimeEqual(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

TEST_CASE("crypto: AES-256-GCM seals and opens; another key, aad or any altered byte fails", "[base][crypto]") {
  std::string key(32, 'k'), other(32, 'o');
  Result<std::string> sealed = crypto::Seal(key, "name-a", "the value");
  REQUIRE(sealed);
  CHECK(sealed->size() == 12 + 9 + 16);
  CHECK(sealed->find("the value") == std::string::npos);
  Result<std::string> opened = crypto::Open(key, "name-a", *sealed);
  REQUIRE(opened);
  CHECK(*opened == "the value");
  // A fresh nonce each time: the same value seals differently.
  CHECK(*crypto::Seal(key, "name-a", "the value") != *sealed);
  CHECK(!crypto::Open(other, "name-a", *sealed));
  CHECK(!crypto::Open(key, "name-b", *sealed));
  for (size_t i = 0; i < sealed->size(); i++) {
    std::string altered = *sealed;
    altered[i] ^= 1;
    CHECK(!crypto::Open(key, "name-a", altered));
  }
  CHECK(!crypto::Open(key, "name-a", sealed->substr(0, 27)));
  CHECK(!crypto::Seal("short", "a", "v"));
}

TEST_CASE("crypto: HMAC-SHA256 known vectors (RFC 4231)", "[base][crypto]") {
  CHECK(crypto::Hex(crypto::HmacSha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(crypto::Hex(crypto::HmacSha256(std::string(20, '\x0b'), "Hi There")) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST_CASE("crypto: RandomString draws only from its alphabet, every character of it", "[base][crypto]") {
  Result<std::string> s = crypto::RandomString(4000, "AB7");
  REQUIRE(s.ok());
  CHECK(s->size() == 4000);
  CHECK(s->find_first_not_of("AB7") == std::string::npos);
  for (char c : std::string("AB7")) CHECK(std::count(s->begin(), s->end(), c) > 1000);
  CHECK(crypto::RandomString(0, "AB")->empty());
  CHECK_FALSE(crypto::RandomString(4, "A").ok());
  CHECK(*crypto::RandomString(40, "ab") != *crypto::RandomString(40, "ab"));
}
