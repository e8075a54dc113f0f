// agent/node_agent.h's ServerList: which server of a cluster the agent talks to.
// --server's URLs, followers' 307s to the leader, the next server round robin when
// one does not answer, and the servers the cluster names at registration. And
// agent/protocol.h's fencing by term.
#include <catch2/catch.hpp>

#include "agent/node_agent.h"
#include "agent/protocol.h"

using namespace berth;
using agent::ServerList;

namespace {

std::string Current(const ServerList& l) { return ServerList::Url(l.current()); }

std::vector<std::string> All(const ServerList& l) {
  std::vector<std::string> out;
  for (const net::Endpoint& e : l.all()) out.push_back(ServerList::Url(e));
  return out;
}

}  // namespace

TEST_CASE("server list: --server takes several URLs, the first is current", "[agent][servers]") {
  Result<ServerList> l = ServerList::Parse("https://10.0.0.1:7070, https://10.0.0.2:7071,,10.0.0.3");
  // A bare address is http:// (net::Endpoint): a mix of schemes is refused.
  REQUIRE(!l);
  CHECK(l.error().message.find("10.0.0.3") != std::string::npos);

  l = ServerList::Parse("https://10.0.0.1:7070, https://10.0.0.2:7071,,https://10.0.0.3,https://10.0.0.1:7070/");
  REQUIRE(l);
  CHECK(All(*l) == std::vector<std::string>{"https://10.0.0.1:7070", "https://10.0.0.2:7071", "https://10.0.0.3:7070"});
  CHECK(Current(*l) == "https://10.0.0.1:7070");
  CHECK(l->current().tls);

  CHECK(!ServerList::Parse(""));
  CHECK(!ServerList::Parse(" , "));
  CHECK(!ServerList::Parse("https://a:7070,https://b:7070/v1"));  // a path
  CHECK(!ServerList::Parse("https://a:7070,unix:///run/berth.sock"));
  REQUIRE(ServerList::Parse("unix:///run/berth.sock"));
  CHECK(Current(*ServerList::Parse("unix:///run/berth.sock")) == "unix:///run/berth.sock");
}

TEST_CASE("server list: a 307 makes its Location's origin current, same scheme only", "[agent][servers]") {
  ServerList l = ServerList::Parse("https://10.0.0.1:7070,https://10.0.0.2:7070").value();
  CHECK(l.Follow("https://10.0.0.2:7070/v1/agent/register"));
  CHECK(Current(l) == "https://10.0.0.2:7070");
  CHECK(l.hops() == 1);
  CHECK(l.all().size() == 2);

  // A leader not given is known from then on.
  CHECK(l.Follow("https://10.0.0.9:7443/v1/agent/nodes/n-1/desired?changes=1"));
  CHECK(Current(l) == "https://10.0.0.9:7443");
  CHECK(All(l) == std::vector<std::string>{"https://10.0.0.1:7070", "https://10.0.0.2:7070", "https://10.0.0.9:7443"});
  CHECK(l.learned() == std::vector<std::string>{"https://10.0.0.9:7443"});
  CHECK(l.hops() == 2);

  // Nothing changes for a Location the agent may not go to.
  for (const char* bad : {"http://10.0.0.3:7070/v1/agent/register", "/v1/agent/register", "10.0.0.3:7070/v1/x",
                          "https:///v1/agent/register", "", "unix:///run/berth.sock"}) {
    INFO(bad);
    CHECK(!l.Follow(bad));
    CHECK(Current(l) == "https://10.0.0.9:7443");
  }
  CHECK(l.hops() == 2);
  l.Reached();
  CHECK(l.hops() == 0);
}

TEST_CASE("server list: round robin, and false once every server failed in a row", "[agent][servers]") {
  ServerList l = ServerList::Parse("http://a:1,http://b:2,http://c:3").value();
  CHECK(l.Next());
  CHECK(Current(l) == "http://b:2");
  CHECK(l.Next());
  CHECK(Current(l) == "http://c:3");
  CHECK(!l.Next());  // a, b and c all failed: back off
  CHECK(Current(l) == "http://a:1");
  CHECK(!l.Next());
  CHECK(Current(l) == "http://b:2");
  l.Reached();
  CHECK(l.Next());
  CHECK(Current(l) == "http://c:3");

  // A follower's 307 says the cluster is up: the failures in a row start again.
  // A server that fails breaks a chain of 307s.
  CHECK(l.Next());  // c, then a, failed
  CHECK(l.Follow("http://a:1/v1/agent/register"));
  CHECK(l.Follow("http://b:2/v1/agent/register"));
  CHECK(l.hops() == 2);
  CHECK(l.Next());
  CHECK(Current(l) == "http://c:3");
  CHECK(l.hops() == 0);
  CHECK(l.Next());
  CHECK(!l.Next());

  // One server: never a quick retry elsewhere.
  ServerList one = ServerList::Parse("http://a:1").value();
  CHECK(!one.Next());
  CHECK(Current(one) == "http://a:1");
}

TEST_CASE("server list: the servers a registration names are merged after the configured ones", "[agent][servers]") {
  ServerList l = ServerList::Parse("https://h1:7070,https://h2:7070").value();
  CHECK(l.Next());
  CHECK(Current(l) == "https://h2:7070");
  l.Learn({"https://h3:7070", "https://h2:7070", "http://h4:7070", "h5:7070", "https://h3:7070", "https://h6",
           "not a url", "https://h7:7071"});
  // Duplicates, other schemes, bare or portless addresses are left out; the
  // current server stays current.
  CHECK(All(l) == std::vector<std::string>{"https://h1:7070", "https://h2:7070", "https://h3:7070", "https://h7:7071"});
  CHECK(Current(l) == "https://h2:7070");
  CHECK(l.learned() == std::vector<std::string>{"https://h3:7070", "https://h2:7070", "https://h7:7071"});

  // A later list replaces what was learned; the configured ones stay.
  CHECK(l.Follow("https://h7:7071/v1/agent/register"));
  l.Learn({"https://h8:7070"});
  CHECK(All(l) == std::vector<std::string>{"https://h1:7070", "https://h2:7070", "https://h8:7070", "https://h7:7071"});
  CHECK(Current(l) == "https://h7:7071");
  l.Learn({});
  CHECK(All(l) == std::vector<std::string>{"https://h1:7070", "https://h2:7070", "https://h7:7071"});

  // At most kMaxLearned.
  std::vector<std::string> many;
  for (int i = 0; i < 100; i++) many.push_back("https://m" + std::to_string(i) + ":7070");
  l.Learn(many);
  CHECK(l.learned().size() == ServerList::kMaxLearned);
}

TEST_CASE("fencing: a line from an older term than one seen is refused", "[agent][fencing]") {
  uint64_t highest = 0;
  std::string why;
  auto line = [](const char* text) { return json::Doc::Parse(text).value(); };
  // No term (a server before fencing): taken, nothing learnt.
  auto none = line(R"({"type":"desired","version":1})");
  CHECK(agent::AdmitTerm(none.view(), &highest, &why));
  CHECK(highest == 0);
  auto t3 = line(R"({"type":"desired","version":2,"term":3})");
  CHECK(agent::AdmitTerm(t3.view(), &highest, &why));
  CHECK(highest == 3);
  // The same term again, and a newer one: taken.
  CHECK(agent::AdmitTerm(t3.view(), &highest, &why));
  auto t5 = line(R"({"type":"changes","version":3,"term":5})");
  CHECK(agent::AdmitTerm(t5.view(), &highest, &why));
  CHECK(highest == 5);
  // The deposed leader of term 3 speaks again: refused, and the highest stays.
  CHECK_FALSE(agent::AdmitTerm(t3.view(), &highest, &why));
  CHECK(highest == 5);
  CHECK_THAT(why, Catch::Contains("term 3, older than term 5"));
}
