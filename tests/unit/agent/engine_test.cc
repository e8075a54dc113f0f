// agent/docker: the Engine client against an engine of our own on a Unix socket —
// API version negotiation (older engines refused, newer ones capped), the version
// prefix on every call, Docker's error messages and status kinds.
#include <catch2/catch.hpp>

#include "agent/container_engine.h"
#include "agent/docker.h"
#include "base/metrics.h"
#include "net/http_server.h"
#include "net/router.h"
#include "support/test_loop.h"

using namespace berth;
using berth::testing::TempDir;
using berth::testing::TestLoop;
namespace http = net::http;

namespace {

// A stand-in engine: answers /version with `api`, and records the calls.
struct FakeEngine {
  TestLoop loop;
  TempDir dir;
  metrics::Registry metrics;
  http::Router router;
  std::unique_ptr<http::Server> server;
  net::Endpoint where;
  std::string api;
  std::vector<std::string> calls;

  explicit FakeEngine(std::string api_version) : api(std::move(api_version)) {
    router.Add("GET", "/version", [this](const http::ExchangePtr& ex) {
      ex->Respond(http::JsonResponse(
          200, "{\"Version\":\"99.0\",\"ApiVersion\":\"" + api + "\",\"Os\":\"linux\",\"Arch\":\"amd64\"}"));
    });
    router.Add("GET", "/{v}/containers/json", [this](const http::ExchangePtr& ex) {
      calls.push_back(ex->request().target);
      ex->Respond(http::JsonResponse(200, "[{\"Id\":\"abc\"}]"));
    });
    router.Add("POST", "/{v}/containers/{id}/start", [this](const http::ExchangePtr& ex) {
      calls.push_back(ex->request().target);
      std::string id(ex->request().Param("id"));
      if (id == "gone") return ex->Respond(http::JsonResponse(404, "{\"message\":\"No such container: gone\"}"));
      if (id == "started") {
        http::Response r;
        r.status = 304;
        return ex->Respond(std::move(r));
      }
      http::Response r;
      r.status = 204;
      ex->Respond(std::move(r));
    });
    server = std::make_unique<http::Server>(loop.get(), &router, http::ServerLimits{}, &metrics);
    where = net::Endpoint::Parse("unix://" + dir.File("docker.sock")).value();
    REQUIRE(server->Listen(where).ok());
  }

  Result<agent::docker::EngineVersion> Negotiate(agent::docker::Engine& e) {
    std::optional<Result<agent::docker::EngineVersion>> out;
    e.Negotiate([&](Result<agent::docker::EngineVersion> v) { out.emplace(std::move(v)); });
    REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
    return std::move(*out);
  }

  Result<json::Doc> Call(agent::docker::Engine& e, std::string method, std::string path) {
    std::optional<Result<json::Doc>> out;
    e.Call(std::move(method), std::move(path), "", [&](Result<json::Doc> r) { out.emplace(std::move(r)); });
    REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
    return std::move(*out);
  }
};

}  // namespace

TEST_CASE("docker engine: Debian's 20.10 (API 1.41) is spoken at 1.41", "[agent][docker]") {
  FakeEngine f("1.41");
  agent::docker::Engine e(f.loop.get(), f.where, 2);
  auto v = f.Negotiate(e);
  REQUIRE(v);
  CHECK(v->version == "99.0");
  CHECK(e.api_version() == "1.41");
  auto r = f.Call(e, "GET", "/containers/json?all=1");
  REQUIRE(r);
  CHECK(r->view().Print() == "[{\"Id\":\"abc\"}]");
  CHECK(f.calls.back() == "/v1.41/containers/json?all=1");
}

TEST_CASE("docker engine: a current engine (API 1.50) is spoken at its own version", "[agent][docker]") {
  FakeEngine f("1.50");
  agent::docker::Engine e(f.loop.get(), f.where, 2);
  REQUIRE(f.Negotiate(e));
  CHECK(e.api_version() == "1.50");
  REQUIRE(f.Call(e, "POST", "/containers/x/start"));
  CHECK(f.calls.back() == "/v1.50/containers/x/start");
}

TEST_CASE("docker engine: a newer engine is spoken at the newest version we know", "[agent][docker]") {
  FakeEngine f("1.99");
  agent::docker::Engine e(f.loop.get(), f.where, 2);
  REQUIRE(f.Negotiate(e));
  CHECK(e.api_version() == agent::docker::kMaxApiVersion);
}

TEST_CASE("docker engine: an engine older than 1.41 is refused with both versions named", "[agent][docker]") {
  FakeEngine f("1.30");
  agent::docker::Engine e(f.loop.get(), f.where, 2);
  auto v = f.Negotiate(e);
  REQUIRE_FALSE(v);
  CHECK_THAT(v.error().message, Catch::Contains("1.30") && Catch::Contains("1.41"));
}

TEST_CASE("docker engine: Docker's errors keep its message; 404 and 304 map as they mean", "[agent][docker]") {
  FakeEngine f("1.41");
  agent::docker::Engine e(f.loop.get(), f.where, 2);
  REQUIRE(f.Negotiate(e));
  auto gone = f.Call(e, "POST", "/containers/gone/start");
  REQUIRE_FALSE(gone);
  CHECK(gone.error().kind == ErrorKind::kNotFound);
  CHECK_THAT(gone.error().message, Catch::Contains("No such container: gone"));
  CHECK(f.Call(e, "POST", "/containers/started/start"));  // already started: fine
  CHECK(f.Call(e, "POST", "/containers/new/start"));      // 204, no body
}

TEST_CASE("docker engine: nothing listening is an unavailable engine, not a crash", "[agent][docker]") {
  TestLoop loop;
  TempDir dir;
  agent::docker::Engine e(loop.get(), net::Endpoint::Parse("unix://" + dir.File("absent.sock")).value(), 2);
  std::optional<Result<agent::docker::EngineVersion>> out;
  e.Negotiate([&](Result<agent::docker::EngineVersion> v) { out.emplace(std::move(v)); });
  REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
  REQUIRE_FALSE(*out);
  CHECK(out->error().kind == ErrorKind::kUnavailable);
}

TEST_CASE("docker engine: a name Docker would not have made never reaches the engine", "[agent][docker][paths]") {
  FakeEngine f("1.41");
  agent::docker::Engine e(f.loop.get(), f.where, 2);
  REQUIRE(f.Negotiate(e));
  size_t before = f.calls.size();
  // Straight through Call: a path that would reach another route.
  auto r = f.Call(e, "POST", "/containers/../images/x/start");
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == ErrorKind::kInvalid);
  CHECK_THAT(r.error().message, Catch::Contains("'..' path segment"));

  // Through the container engine: names from a task or a server's line.
  agent::DockerContainerEngine engine(&e);
  std::optional<Status> started, removed, pulled;
  std::optional<Result<std::string>> created;
  std::optional<Result<bool>> present;
  engine.Start("x/../../images/busybox", [&](Status s) { started = std::move(s); });
  engine.Create("app&platform=evil", "{}", [&](Result<std::string> s) { created = std::move(s); });
  engine.Remove("x?force=1", [&](Status s) { removed = std::move(s); });
  engine.ImagePresent("busybox/../../containers/x", [&](Result<bool> s) { present = std::move(s); });
  engine.Pull("a b", "", [&](Status s) { pulled = std::move(s); });
  // Never from inside the call: the caller's own state is not re-entered.
  CHECK_FALSE(started.has_value());
  REQUIRE(f.loop.RunUntil([&] { return started && created && removed && present && pulled; }));
  CHECK_THAT(started->error().message, Catch::Contains("refusing the container name 'x/../../images/busybox'"));
  CHECK_THAT(created->error().message, Catch::Contains("refusing the container name 'app&platform=evil'"));
  CHECK_THAT(removed->error().message, Catch::Contains("refusing the container name"));
  CHECK_THAT(present->error().message, Catch::Contains("refusing the image"));
  CHECK_THAT(pulled->error().message, Catch::Contains("refusing the image 'a b'"));
  CHECK(f.calls.size() == before);  // nothing was sent

  // A name of ours still goes, escaped where it is a query value.
  REQUIRE(f.Call(e, "POST", "/containers/berth-1-app/start"));
  CHECK(f.calls.back() == "/v1.41/containers/berth-1-app/start");
}
