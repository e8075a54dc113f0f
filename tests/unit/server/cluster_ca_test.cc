// server/cluster_ca: the server certificate renewed on simulated time keeps its
// key (what the install line pins), and a broken key is replaced.
#include "server/cluster_ca.h"

#include <catch2/catch.hpp>
#include <ctime>

#include "base/files.h"
#include "net/pki.h"
#include "support/test_loop.h"

namespace berth::server {
namespace {

using testing::TempDir;

constexpr int64_t kLife = 90 * 86400;

std::string Pin(const ClusterCa& ca) {
  Result<std::string> pin = net::pki::PublicKeyPin(ca.server_key_pem());
  REQUIRE(pin);
  return pin.value();
}

TEST_CASE("a renewed server certificate keeps the server's key", "[server]") {
  TempDir dir;
  Result<std::unique_ptr<ClusterCa>> ca = ClusterCa::Open(dir.path());
  REQUIRE(ca);
  int64_t now = time(nullptr);
  Result<bool> made = (*ca)->EnsureServerCert({"box"}, {"10.0.0.1"}, now, kLife);
  REQUIRE(made);
  CHECK(made.value());
  std::string pin = Pin(**ca);
  CHECK(pin.starts_with("sha256//"));
  std::string first_cert = (*ca)->server_chain_pem();

  // Two thirds of its life on: renewed, with the same key.
  Result<bool> renewed = (*ca)->EnsureServerCert({"box"}, {"10.0.0.1"}, now + kLife * 2 / 3 + 10, kLife);
  REQUIRE(renewed);
  CHECK(renewed.value());
  CHECK((*ca)->server_chain_pem() != first_cert);
  CHECK(Pin(**ca) == pin);

  // A new name: a new certificate, the same key; and after a restart (read back).
  Result<std::unique_ptr<ClusterCa>> again = ClusterCa::Open(dir.path());
  REQUIRE(again);
  Result<bool> renamed = (*again)->EnsureServerCert({"box", "box.lan"}, {"10.0.0.1"}, now + kLife, kLife);
  REQUIRE(renamed);
  CHECK(renamed.value());
  CHECK(Pin(**again) == pin);
}

TEST_CASE("a broken server key is replaced at the next certificate", "[server]") {
  TempDir dir;
  Result<std::unique_ptr<ClusterCa>> ca = ClusterCa::Open(dir.path());
  REQUIRE(ca);
  int64_t now = time(nullptr);
  REQUIRE((*ca)->EnsureServerCert({"box"}, {}, now, kLife));
  std::string pin = Pin(**ca);
  REQUIRE(files::WriteAtomically(dir.File("server.key"), "-----BEGIN EC PRIVATE KEY-----\nnot a key\n", 0600));
  Result<std::unique_ptr<ClusterCa>> again = ClusterCa::Open(dir.path());
  REQUIRE(again);
  Result<bool> renewed = (*again)->EnsureServerCert({"box"}, {}, now + kLife, kLife);
  REQUIRE(renewed);
  CHECK(renewed.value());
  CHECK(net::pki::PrivateKeyValid((*again)->server_key_pem()));
  CHECK(Pin(**again) != pin);
}

}  // namespace
}  // namespace berth::server
