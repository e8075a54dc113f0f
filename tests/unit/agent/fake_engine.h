// A ContainerEngine for the reconciler's tests: it keeps a model of the
// containers it holds and answers no call by itself. Each call waits in
// `pending` until the test answers it (Answer/AnswerAll), so a test decides what
// is in flight when, and sees the order calls were made in (`log`).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/container_engine.h"
#include "base/json.h"

namespace berth::agent::testing {

class FakeEngine final : public ContainerEngine {
 public:
  struct Container {
    std::string name;  // Docker's name
    std::string state = "created";
    int64_t exit_code = 0;
    std::map<std::string, std::string> labels;
  };
  struct Pending {
    std::string op;   // list, inspect, create, start, stop, remove, image, pull, ...
    std::string ref;  // the container id or name, image or network
    // Applies the call to the model (when `s` is success) and answers it.
    std::function<void(Status s)> answer;
  };

  std::map<std::string, Container> containers;  // by id
  std::deque<Pending> pending;
  std::vector<std::string> log;  // "op ref", in the order the calls were made
  size_t peak_pending = 0;       // the most container calls waiting at once (pulls apart)
  std::function<void(const ContainerEvent&)> on_event;
  std::function<void(Status)> on_end;
  bool image_present = true;

  size_t Count(const std::string& op) const {
    size_t n = 0;
    for (const std::string& l : log) n += l.rfind(op + " ", 0) == 0;
    return n;
  }
  size_t Waiting(const std::string& op) const {
    size_t n = 0;
    for (const Pending& p : pending) n += p.op == op;
    return n;
  }
  // Answers the oldest waiting call of `op` (any op when empty); false if none.
  bool Answer(const std::string& op = "", Status s = {}) {
    for (auto it = pending.begin(); it != pending.end(); ++it) {
      if (!op.empty() && it->op != op) continue;
      Pending p = std::move(*it);
      pending.erase(it);
      p.answer(std::move(s));
      return true;
    }
    return false;
  }
  // Answers calls, oldest first, until none waits (calls they lead to included).
  void AnswerAll() {
    for (int i = 0; i < 100000 && !pending.empty(); i++) Answer();
  }

  void List(const std::string& node, bool stopped_only, Done<std::vector<ListedContainer>> done) override {
    Add("list", node, [this, node, stopped_only, done](Status s) {
      if (!s) return done(s.take_error());
      std::vector<ListedContainer> out;
      for (const auto& [id, c] : containers) {
        auto n = c.labels.find(kNodeLabel);
        if (n == c.labels.end() || n->second != node) continue;
        if (stopped_only && c.state == "running") continue;
        out.push_back(ListedContainer{id, c.state, c.labels});
      }
      done(std::move(out));
    });
  }
  void Inspect(const std::string& ref, Done<ContainerStatus> done) override {
    Add("inspect", ref, [this, ref, done](Status s) {
      if (!s) return done(s.take_error());
      auto it = Find(ref);
      if (it == containers.end()) return done(Error::NotFound("NoSuchContainer", "No such container: " + ref));
      ContainerStatus st;
      st.id = it->first;
      st.state = it->second.state;
      st.exited = st.state == "exited" || st.state == "dead";
      st.exit_code = it->second.exit_code;
      done(std::move(st));
    });
  }
  void Create(const std::string& name, const std::string& body, Done<std::string> done) override {
    Add("create", name, [this, name, body, done](Status s) {
      if (!s) return done(s.take_error());
      if (Find(name) != containers.end()) return done(Error::Conflict("Conflict", "name in use: " + name));
      std::string id = "id-" + name;
      Container c;
      c.name = name;
      c.labels = LabelsOf(body);
      containers[id] = std::move(c);
      done(id);
    });
  }
  void Start(const std::string& id, StatusDone done) override {
    Add("start", id, [this, id, done](Status s) {
      if (!s) return done(s);
      auto it = containers.find(id);
      if (it == containers.end()) return done(Error::NotFound("NoSuchContainer", id));
      it->second.state = "running";
      done(Status{});
    });
  }
  void Stop(const std::string& id, int64_t, StatusDone done) override {
    Add("stop", id, [this, id, done](Status s) {
      if (!s) return done(s);
      auto it = containers.find(id);
      if (it == containers.end()) return done(Error::NotFound("NoSuchContainer", id));
      if (it->second.state == "running") {
        it->second.state = "exited";
        it->second.exit_code = 143;
      }
      done(Status{});
    });
  }
  void Remove(const std::string& id, StatusDone done) override {
    Add("remove", id, [this, id, done](Status s) {
      if (!s) return done(s);
      if (containers.erase(id) == 0) return done(Error::NotFound("NoSuchContainer", id));
      done(Status{});
    });
  }
  void ImagePresent(const std::string& image, Done<bool> done) override {
    Add("image", image, [this, done](Status s) {
      if (!s) return done(s.take_error());
      done(image_present);
    });
  }
  void Pull(const std::string& image, const std::string&, StatusDone done) override {
    Add("pull", image, [this, done](Status s) {
      if (s) image_present = true;
      done(s);
    });
  }
  void RemoveImage(const std::string& image, StatusDone done) override { Add("rmi", image, done); }
  void CreateNetwork(const std::string& body, StatusDone done) override { Add("network", body, done); }
  void ListNetworks(const std::string& node, Done<std::vector<ListedNetwork>> done) override {
    Add("networks", node, [done](Status s) {
      if (!s) return done(s.take_error());
      done(std::vector<ListedNetwork>{});
    });
  }
  void RemoveNetwork(const std::string& id, StatusDone done) override { Add("rmnetwork", id, done); }

  std::unique_ptr<EventWatch> Watch(const std::string& node, std::function<void(const ContainerEvent&)> event,
                                    StatusDone end) override {
    log.push_back("watch " + node);
    on_event = std::move(event);
    on_end = std::move(end);
    return std::make_unique<EventWatch>();
  }

 private:
  static constexpr const char* kNodeLabel = "berth.node";

  void Add(std::string op, std::string ref, std::function<void(Status)> answer) {
    log.push_back(op + " " + ref);
    pending.push_back(Pending{std::move(op), std::move(ref), std::move(answer)});
    size_t n = 0;
    for (const Pending& p : pending) n += p.op != "pull";
    if (n > peak_pending) peak_pending = n;
  }
  std::map<std::string, Container>::iterator Find(const std::string& ref) {
    auto it = containers.find(ref);
    if (it != containers.end()) return it;
    for (it = containers.begin(); it != containers.end(); ++it) {
      if (it->second.name == ref) return it;
    }
    return it;
  }
  // The Labels object of a create body.
  static std::map<std::string, std::string> LabelsOf(const std::string& body) {
    std::map<std::string, std::string> out;
    Result<json::Doc> d = json::Doc::Parse(body);
    if (!d) return out;
    json::View labels = d->view().Get("Labels");
    for (json::View v : labels) out[std::string(v.Key())] = std::string(v.String());
    return out;
  }
};

}  // namespace berth::agent::testing
