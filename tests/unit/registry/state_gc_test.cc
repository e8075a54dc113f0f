// registry/state and registry/gc: commands through the store, reload from disk,
// immutability, and collection safety.
#include <sys/stat.h>
#include <sys/time.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "base/crypto.h"
#include "base/metrics.h"
#include "model/state.h"
#include "registry/blobs.h"
#include "registry/gc.h"
#include "registry/state.h"
#include "store/store.h"
#include "support/test_loop.h"

using namespace berth;
using namespace berth::registry;

namespace {

// A command as it went into the log: its fields, and its entry.
struct Logged {
  std::string type;
  std::string payload;
  int64_t time_ms;
  std::string entry;
  bool applied;
};

struct RegistryFixture {
  testing::TempDir dir;
  metrics::Registry metrics;
  model::State state;
  RegistryState reg;
  std::unique_ptr<store::Store> store;
  BlobStore blobs{dir.File("registry")};
  std::vector<Logged> logged;  // every command Apply submitted

  RegistryFixture() {
    state.AddPart(&reg);
    Open();
    REQUIRE(blobs.Init().ok());
  }
  void Open() {
    store.reset();
    auto s = store::Store::Open({dir.File("state.db")}, &state, &metrics);
    REQUIRE(s.ok());
    store = std::move(s.value());
  }
  Result<std::string> Apply(store::CommandPtr cmd) {
    cmd->time_ms = 1700000000000;
    Logged l{cmd->Type(), cmd->Encode(), cmd->time_ms, store::EncodeBatch({cmd.get()}), false};
    std::optional<Result<std::string>> out;
    store->Submit(std::move(cmd), [&out](Result<std::string> r) { out.emplace(std::move(r)); });
    store->Flush();
    REQUIRE(out.has_value());
    l.applied = out->ok();
    logged.push_back(std::move(l));
    return std::move(*out);
  }
  // Writes a blob through an upload file, as a push does; returns its digest.
  std::string Blob(const std::string& data) {
    std::string digest = "sha256:" + crypto::Hex(crypto::Sha256(data));
    auto f = UploadFile::Open(blobs.UploadPath(std::string(32, 'a')), true);
    REQUIRE(f.ok());
    REQUIRE((*f)->Append(data).ok());
    auto d = (*f)->Digest();
    REQUIRE(d.ok());
    CHECK(*d == digest);
    REQUIRE(blobs.Commit(std::move(f.value()), digest).ok());
    return digest;
  }
  void Age(const std::string& digest, int64_t seconds) {
    timeval tv[2];
    gettimeofday(&tv[0], nullptr);
    tv[0].tv_sec -= seconds;
    tv[1] = tv[0];
    REQUIRE(utimes(blobs.BlobPath(digest).c_str(), tv) == 0);
  }
  store::CommandPtr Put(const std::string& repo, const std::string& tag, const std::string& config,
                        const std::vector<std::string>& layers) {
    std::string body =
        R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":1,"digest":")" +
        config + R"("},"layers":[)";
    for (size_t i = 0; i < layers.size(); i++) {
      body += (i ? "," : "") +
              std::string(R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","size":1,"digest":")") + layers[i] +
              "\"}";
    }
    body += "]}";
    auto c = std::make_unique<PutManifest>();
    c->repo = repo;
    c->digest = "sha256:" + crypto::Hex(crypto::Sha256(body));
    c->media_type = std::string(kOciManifest);
    c->body = body;
    c->tag = tag;
    c->auto_create = true;
    return c;
  }
};

int64_t NowMs() {
  timeval tv;
  gettimeofday(&tv, nullptr);
  return static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}

}  // namespace

TEST_CASE("registry state: manifests and tags survive a reload, immutable tags do not move", "[registry]") {
  RegistryFixture f;
  std::string cfg = f.Blob("config"), l1 = f.Blob("layer one");
  auto put = f.Put("app", "v1", cfg, {l1});
  std::string d1 = static_cast<PutManifest&>(*put).digest;
  REQUIRE(f.Apply(std::move(put)).ok());
  CHECK(f.reg.BlobRefs(l1) == 1);
  auto create = std::make_unique<CreateRepository>();
  create->name = "app";
  auto again = f.Apply(std::move(create));
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == "RepositoryAlreadyExistsException");
  auto imm = std::make_unique<UpdateRepository>();
  imm->name = "app";
  imm->immutable = 1;
  REQUIRE(f.Apply(std::move(imm)).ok());
  auto moved = f.Apply(f.Put("app", "v1", cfg, {}));
  REQUIRE_FALSE(moved.ok());
  CHECK(moved.error().code == "ImageTagAlreadyExistsException");
  CHECK(f.Apply(f.Put("app", "v1", cfg, {l1})).ok());  // the same manifest again is fine
  auto del = std::make_unique<DeleteRepository>();
  del->name = "app";
  auto refused = f.Apply(std::move(del));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == "RepositoryNotEmptyException");

  f.Open();  // reload from disk
  const Repository* r = f.reg.FindRepository("app");
  REQUIRE(r);
  CHECK(r->immutable);
  CHECK_FALSE(r->anonymous_pull);
  CHECK(r->tags.at("v1") == d1);
  CHECK(r->manifests.at(d1).body.find(l1) != std::string::npos);
  CHECK(f.reg.BlobRefs(l1) == 1);
  // Replaying the log gives the same state: every registry command, read back
  // from its fields or from its log entry by the reloaded state machine, is the
  // command that was applied.
  REQUIRE(f.logged.size() == 6);
  int registry_applied = 0;
  for (const Logged& l : f.logged) {
    CAPTURE(l.type, l.payload);
    CHECK(f.reg.Owns(l.type));
    auto cmd = f.state.Decode(l.type, l.payload, l.time_ms);
    REQUIRE(cmd.ok());
    CHECK(std::string((*cmd)->Type()) == l.type);
    CHECK((*cmd)->Encode() == l.payload);
    CHECK((*cmd)->time_ms == l.time_ms);
    auto batch = store::DecodeBatch(l.entry, &f.state);
    REQUIRE(batch.ok());
    REQUIRE(batch->size() == 1);
    CHECK(std::string((*batch)[0]->Type()) == l.type);
    CHECK((*batch)[0]->Encode() == l.payload);
    CHECK((*batch)[0]->time_ms == l.time_ms);
    registry_applied += l.applied ? 1 : 0;
  }
  CHECK(registry_applied == 3);          // the refused ones are in the log, and changed nothing
  CHECK(f.store->applied_index() == 6);  // an entry per Apply, refused or not
}

TEST_CASE("registry gc: only unreferenced blobs older than the mark go", "[registry]") {
  RegistryFixture f;
  std::string cfg = f.Blob("cfg"), kept = f.Blob("referenced layer"), old = f.Blob("old orphan"),
              fresh = f.Blob("fresh orphan"), claimed = f.Blob("claimed by a push in flight");
  REQUIRE(f.Apply(f.Put("app", "v1", cfg, {kept})).ok());
  for (const std::string& d : {cfg, kept, old, claimed}) f.Age(d, 7200);
  int64_t mark = NowMs() - 3600 * 1000;
  auto pending = [&](const std::string& d) { return d == claimed; };

  GcResult dry = CollectGarbage(f.blobs, f.reg, pending, mark, true);
  CHECK(dry.removed == std::vector<std::string>{old});
  CHECK(f.blobs.Size(old) >= 0);  // a dry run removes nothing

  GcResult r = CollectGarbage(f.blobs, f.reg, pending, mark, false);
  CHECK(r.removed == std::vector<std::string>{old});
  CHECK(r.kept == 4);
  CHECK(f.blobs.Size(old) == -1);
  for (const std::string& d : {cfg, kept, fresh, claimed}) CHECK(f.blobs.Size(d) >= 0);

  // A blob written again (a second push of the same layer) is fresh again.
  f.Age(claimed, 7200);
  CHECK(f.Blob("claimed by a push in flight") == claimed);
  CHECK(CollectGarbage(f.blobs, f.reg, nullptr, mark, false).removed.empty());

  // Once its manifest is gone, an aged layer is collected.
  auto del = std::make_unique<DeleteManifest>();
  del->repo = "app";
  del->digest = f.reg.FindRepository("app")->tags.at("v1");
  REQUIRE(f.Apply(std::move(del)).ok());
  CHECK(f.reg.BlobRefs(kept) == 0);
  GcResult after = CollectGarbage(f.blobs, f.reg, nullptr, mark, false);
  std::sort(after.removed.begin(), after.removed.end());
  std::vector<std::string> want = {cfg, kept};
  std::sort(want.begin(), want.end());
  CHECK(after.removed == want);
}

TEST_CASE("registry blobs: a resumed upload file is hashed from disk", "[registry]") {
  testing::TempDir dir;
  BlobStore blobs(dir.File("registry"));
  REQUIRE(blobs.Init().ok());
  std::string id(32, 'b');
  {
    auto f = UploadFile::Open(blobs.UploadPath(id), true);
    REQUIRE(f.ok());
    REQUIRE((*f)->Append("hello ").ok());
  }
  auto f = UploadFile::Open(blobs.UploadPath(id), true);  // as after a restart
  REQUIRE(f.ok());
  CHECK((*f)->size() == 6);
  REQUIRE((*f)->Append("world").ok());
  auto d = (*f)->Digest();
  REQUIRE(d.ok());
  CHECK(*d == "sha256:" + crypto::Hex(crypto::Sha256("hello world")));
}

TEST_CASE("registry state: RemoveBlobs round-trips and tells the registry what to remove", "[registry]") {
  registry::RemoveBlobs c;
  c.digests = {"sha256:" + std::string(64, 'a'), "sha256:" + std::string(64, 'b')};
  c.mark_ms = 1234;
  registry::RegistryState state;
  CHECK(state.Owns("RemoveBlobs"));
  auto back = state.Decode("RemoveBlobs", c.Encode(), 99);
  REQUIRE(back.ok());
  const auto& got = static_cast<const registry::RemoveBlobs&>(*back.value());
  CHECK(got.digests == c.digests);
  CHECK(got.mark_ms == 1234);
  CHECK(got.time_ms == 99);

  // Applied, it changes no rows and hands its digests and mark to the registry.
  RegistryFixture f;
  std::vector<std::string> told;
  int64_t mark = 0;
  f.reg.OnBlobsRemoved([&](const std::vector<std::string>& digests, int64_t m) {
    told = digests;
    mark = m;
  });
  auto cmd = std::make_unique<RemoveBlobs>(c);
  REQUIRE(f.Apply(std::move(cmd)).ok());
  CHECK(told == c.digests);
  CHECK(mark == 1234);
}
