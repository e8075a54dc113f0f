// sched/engine: placement scenarios, one per file in tests/unit/sched/placement/*.scn,
// run by this one runner (a new case is a new file). The format, a command a line,
// `#` starting a comment:
//
//   node <id> cpu=<units> mem=<MiB> [<attribute>=<value>...]
//   task <id> cpu=<n> mem=<n> [group=<g>] [port=<p>/tcp|udp...]     accounts a running task
//   untask <id> cpu=<n> mem=<n> [group=<g>] [port=...]                removes one
//   status <id> active|draining|disconnected
//   remove <id>
//   place <count> cpu=<n> mem=<n> [group=<g>] [strategy=<type>[:<field>]...] [distinct]
//         [port=<p>/tcp|udp...] [where <memberOf expression, to the end of the line>]
//   expect <id>...                 the nodes of the last place, in order ("expect" alone: none)
//   expect-counts <id>=<n>...      how many of the last place went to each node (others: 0)
//   expect-by <attribute> <value>=<n>...   the same per attribute value
//   expect-reason <text>           the last place's failure reason, exactly ("expect-reason" alone: none)
//   expect-free <id> cpu=<n> mem=<n>
//
// The group defaults to service:web. Every scenario runs on an engine seeded with 1.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sched/engine_helpers.h"

using namespace berth::sched;
using namespace berth::sched::testing;

namespace {

std::vector<std::string> Words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

class Scenario {
 public:
  explicit Scenario(std::string file) : file_(std::move(file)) {}

  void Run() {
    std::ifstream in(file_);
    REQUIRE(in.good());
    std::string line;
    while (std::getline(in, line)) {
      line_no_++;
      size_t hash = line.find('#');
      if (hash != std::string::npos) line.resize(hash);
      std::string where;
      size_t w = line.find(" where ");
      if (w != std::string::npos) {
        where = line.substr(w + 7);
        line.resize(w);
      }
      std::vector<std::string> words = Words(line);
      if (words.empty()) continue;
      INFO(file_ << ":" << line_no_ << ": " << line);
      Do(words, where);
    }
    CHECK(line_no_ > 0);
  }

 private:
  Engine::NodeRef Ref(const std::string& id) {
    auto it = refs_.find(id);
    if (it == refs_.end()) FAIL("no node " << id);
    return it->second;
  }

  // Reads key=value words from `from` on into the shape and request.
  void Options(const std::vector<std::string>& words, size_t from, Request* r,
               std::map<std::string, std::string>* attrs = nullptr) {
    for (size_t i = from; i < words.size(); i++) {
      const std::string& word = words[i];
      if (word == "distinct") {
        r->distinct_instance = true;
        continue;
      }
      size_t eq = word.find('=');
      if (eq == std::string::npos) FAIL("expected key=value, not " << word);
      std::string k = word.substr(0, eq), v = word.substr(eq + 1);
      if (k == "cpu") {
        r->shape.cpu = std::stoll(v);
      } else if (k == "mem") {
        r->shape.memory = std::stoll(v);
      } else if (attrs) {
        (*attrs)[k] = v;
      } else if (k == "group") {
        r->group = v;
      } else if (k == "strategy") {
        r->strategies.push_back(S(v));
      } else if (k == "port") {
        PortSpec p;
        size_t slash = v.find('/');
        p.port = static_cast<uint16_t>(std::stoi(v.substr(0, slash)));
        p.udp = slash != std::string::npos && v.substr(slash + 1) == "udp";
        r->shape.ports.push_back(p);
      } else {
        FAIL("unknown option " << k);
      }
    }
  }

  void Do(const std::vector<std::string>& words, const std::string& where) {
    const std::string& cmd = words[0];
    Request r;
    r.group = "service:web";
    if (cmd == "node") {
      REQUIRE(words.size() >= 2);
      std::map<std::string, std::string> attrs;
      Options(words, 2, &r, &attrs);
      refs_[words[1]] = engine_.AddNode(Node(words[1], r.shape.cpu, r.shape.memory, attrs));
    } else if (cmd == "task" || cmd == "untask") {
      REQUIRE(words.size() >= 2);
      Options(words, 2, &r);
      if (cmd == "task") {
        engine_.AddTask(Ref(words[1]), r.shape, r.group);
      } else {
        engine_.RemoveTask(Ref(words[1]), r.shape, r.group);
      }
    } else if (cmd == "status") {
      REQUIRE(words.size() == 3);
      const std::string& s = words[2];
      REQUIRE((s == "active" || s == "draining" || s == "disconnected"));
      engine_.SetStatus(Ref(words[1]), s != "draining", s != "disconnected");
    } else if (cmd == "remove") {
      REQUIRE(words.size() == 2);
      engine_.RemoveNode(Ref(words[1]));
      refs_.erase(words[1]);
    } else if (cmd == "place") {
      REQUIRE(words.size() >= 2);
      Options(words, 2, &r);
      if (!where.empty()) r.member_of.push_back(E(where));
      last_ = engine_.Place(r, std::stoi(words[1]));
      // Whatever a scenario expects, no placement may over-commit a node.
      for (const auto& [id, ref] : refs_) {
        CHECK(engine_.FreeCpu(ref) >= 0);
        CHECK(engine_.FreeMemory(ref) >= 0);
      }
    } else if (cmd == "expect") {
      std::vector<std::string> got;
      for (Engine::NodeRef n : last_.nodes) got.push_back(engine_.NodeId(n));
      CHECK(got == std::vector<std::string>(words.begin() + 1, words.end()));
    } else if (cmd == "expect-counts") {
      std::map<std::string, int> want;
      for (size_t i = 1; i < words.size(); i++) {
        size_t eq = words[i].find('=');
        want[words[i].substr(0, eq)] = std::stoi(words[i].substr(eq + 1));
      }
      CHECK(CountById(engine_, last_.nodes) == want);
    } else if (cmd == "expect-by") {
      REQUIRE(words.size() >= 2);
      std::map<std::string, int> want, got;
      for (size_t i = 2; i < words.size(); i++) {
        size_t eq = words[i].find('=');
        want[words[i].substr(0, eq)] = std::stoi(words[i].substr(eq + 1));
      }
      for (Engine::NodeRef n : last_.nodes) got[attrs_of_[engine_.NodeId(n)][words[1]]]++;
      CHECK(got == want);
    } else if (cmd == "expect-reason") {
      std::string want;
      for (size_t i = 1; i < words.size(); i++) want += (i > 1 ? " " : "") + words[i];
      CHECK(last_.reason == want);
    } else if (cmd == "expect-free") {
      REQUIRE(words.size() == 4);
      Options(words, 2, &r);
      CHECK(engine_.FreeCpu(Ref(words[1])) == r.shape.cpu);
      CHECK(engine_.FreeMemory(Ref(words[1])) == r.shape.memory);
    } else {
      FAIL("unknown command " << cmd);
    }
    if (cmd == "node") {
      std::map<std::string, std::string> attrs;
      Request ignored;
      Options(words, 2, &ignored, &attrs);
      attrs_of_[words[1]] = attrs;
    }
  }

  std::string file_;
  int line_no_ = 0;
  Engine engine_{1};
  std::map<std::string, Engine::NodeRef> refs_;
  std::map<std::string, std::map<std::string, std::string>> attrs_of_;
  Engine::Placement last_;
};

}  // namespace

TEST_CASE("placement scenarios (tests/unit/sched/placement/*.scn)", "[sched][engine]") {
  std::filesystem::path dir = std::filesystem::path(__FILE__).parent_path() / "placement";
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".scn") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 10);
  for (const std::string& f : files) {
    DYNAMIC_SECTION(std::filesystem::path(f).filename().string()) { Scenario(f).Run(); }
  }
}
