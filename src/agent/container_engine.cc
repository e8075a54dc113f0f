#include "agent/container_engine.h"

#include <cstdint>
#include <cstdlib>

#include "agent/container_spec.h"
#include "agent/docker.h"
#include "base/json.h"

namespace berth::agent {

namespace {

std::string NodeFilter(const std::string& node, bool stopped_only) {
  std::string f = "{\"label\":[\"" + std::string(kLabelNode) + "=" + node + "\"]";
  if (stopped_only) f += ",\"status\":[\"exited\",\"dead\",\"created\"]";
  return f + "}";
}

std::map<std::string, std::string> Labels(json::View v) {
  std::map<std::string, std::string> out;
  for (json::View l : v) {
    if (l.IsString()) out[std::string(l.Key())] = std::string(l.String());
  }
  return out;
}

// A port number as Docker writes it ("8080"); 0 for anything else.
int PortOf(std::string_view text) {
  if (text.empty() || text.size() > 5) return 0;
  int n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + (c - '0');
  }
  return n <= 65535 ? n : 0;
}

// Answers a call refused before it reached the engine (a name Docker would not
// have made), on the next loop turn as an engine's answer would come.
template <typename DoneFn>
void Refused(docker::Engine* engine, DoneFn done, Error error) {
  engine->Refuse([done = std::move(done)](Result<json::Doc> r) mutable { done(r.take_error()); }, std::move(error));
}

Status Ok(Result<json::Doc> r) {
  if (!r) return r.take_error();
  return {};
}

class DockerWatch final : public EventWatch {
 public:
  std::unique_ptr<docker::Stream> stream;
};

}  // namespace

ContainerStatus ParseContainerInspect(json::View inspect) {
  ContainerStatus s;
  s.id = std::string(inspect.Get("Id").String());
  json::View st = inspect.Get("State");
  s.state = std::string(st.Get("Status").String());
  s.exited = s.state == "exited" || s.state == "dead";
  s.exit_code = st.Get("ExitCode").IntIn(INT32_MIN, INT32_MAX, 0);
  s.oom = st.Get("OOMKilled").IsBool() && st.Get("OOMKilled").Bool();
  s.finished_at = std::string(st.Get("FinishedAt").String());
  std::string health(st.Get("Health").Get("Status").String());
  s.health = health == "healthy" ? "HEALTHY" : health == "unhealthy" ? "UNHEALTHY" : "UNKNOWN";
  json::Doc bindings = json::Doc::Array();
  for (json::View port : inspect.Get("NetworkSettings").Get("Ports")) {
    std::string key(port.Key());
    size_t slash = key.find('/');
    int container_port = PortOf(key.substr(0, slash));
    std::string proto = slash == std::string::npos ? "tcp" : key.substr(slash + 1);
    for (json::View b : port) {
      std::string ip(b.Get("HostIp").String());
      if (ip == "::") continue;  // the same binding on IPv6
      json::Doc nb = json::Doc::Object();
      nb.Set("containerPort", container_port)
          .Set("hostPort", PortOf(b.Get("HostPort").String()))
          .Set("protocol", proto)
          .Set("bindIP", ip.empty() ? "0.0.0.0" : ip);
      bindings.Push(nb);
    }
  }
  s.bindings = bindings.Print();
  return s;
}

std::vector<ListedContainer> ParseContainerList(json::View list) {
  std::vector<ListedContainer> out;
  for (json::View c : list) {
    out.push_back({std::string(c.Get("Id").String()), std::string(c.Get("State").String()), Labels(c.Get("Labels"))});
  }
  return out;
}

std::vector<ListedNetwork> ParseNetworkList(json::View list) {
  std::vector<ListedNetwork> out;
  for (json::View n : list) {
    out.push_back({std::string(n.Get("Id").String()), std::string(n.Get("Name").String()), Labels(n.Get("Labels"))});
  }
  return out;
}

std::optional<ContainerEvent> ParseContainerEvent(std::string_view line) {
  Result<json::Doc> d = json::Doc::Parse(line);
  if (!d) return std::nullopt;
  json::View ev = d->view();
  json::View attrs = ev.Get("Actor").Get("Attributes");
  ContainerEvent e;
  e.action = std::string(ev.Get("Action").String());
  e.id = std::string(ev.Get("Actor").Get("ID").String());
  e.task = std::string(attrs.Get(kLabelTask).String());
  e.container = std::string(attrs.Get(kLabelContainer).String());
  return e;
}

void DockerContainerEngine::List(const std::string& node, bool stopped_only, Done<std::vector<ListedContainer>> done) {
  engine_->Call("GET", "/containers/json?all=1&filters=" + docker::QueryEscape(NodeFilter(node, stopped_only)), "",
                [done = std::move(done)](Result<json::Doc> r) {
                  if (!r) return done(r.take_error());
                  done(ParseContainerList(r->view()));
                });
}

void DockerContainerEngine::Inspect(const std::string& ref, Done<ContainerStatus> done) {
  if (Status s = docker::CheckObjectName("container", ref); !s)
    return Refused(engine_, std::move(done), s.take_error());
  engine_->Call("GET", "/containers/" + ref + "/json", "", [done = std::move(done)](Result<json::Doc> r) {
    if (!r) return done(r.take_error());
    done(ParseContainerInspect(r->view()));
  });
}

void DockerContainerEngine::Create(const std::string& name, const std::string& body, Done<std::string> done) {
  if (Status s = docker::CheckObjectName("container", name); !s)
    return Refused(engine_, std::move(done), s.take_error());
  engine_->Call("POST", "/containers/create?name=" + docker::QueryEscape(name), body,
                [done = std::move(done)](Result<json::Doc> r) {
                  if (!r) return done(r.take_error());
                  done(std::string(r->view().Get("Id").String()));
                });
}

void DockerContainerEngine::Start(const std::string& id, StatusDone done) {
  if (Status s = docker::CheckObjectName("container", id); !s) return Refused(engine_, std::move(done), s.take_error());
  engine_->Call("POST", "/containers/" + id + "/start", "",
                [done = std::move(done)](Result<json::Doc> r) { done(Ok(std::move(r))); });
}

void DockerContainerEngine::Stop(const std::string& id, int64_t timeout_s, StatusDone done) {
  if (Status s = docker::CheckObjectName("container", id); !s) return Refused(engine_, std::move(done), s.take_error());
  engine_->Call("POST", "/containers/" + id + "/stop?t=" + std::to_string(timeout_s), "",
                [done = std::move(done)](Result<json::Doc> r) { done(Ok(std::move(r))); });
}

void DockerContainerEngine::Remove(const std::string& id, StatusDone done) {
  if (Status s = docker::CheckObjectName("container", id); !s) return Refused(engine_, std::move(done), s.take_error());
  engine_->Call("DELETE", "/containers/" + id + "?v=1&force=1", "",
                [done = std::move(done)](Result<json::Doc> r) { done(Ok(std::move(r))); });
}

void DockerContainerEngine::ImagePresent(const std::string& image, Done<bool> done) {
  if (Status s = docker::CheckImageName(image); !s) return Refused(engine_, std::move(done), s.take_error());
  engine_->Call("GET", "/images/" + image + "/json", "", [done = std::move(done)](Result<json::Doc> r) {
    if (r) return done(true);
    if (r.error().kind == ErrorKind::kNotFound) return done(false);
    done(r.take_error());  // engine trouble, not absence
  });
}

void DockerContainerEngine::Pull(const std::string& image, const std::string& auth_json, StatusDone done) {
  if (Status s = docker::CheckImageName(image); !s) return Refused(engine_, std::move(done), s.take_error());
  engine_->Pull(image, auth_json, std::move(done));
}

void DockerContainerEngine::RemoveImage(const std::string& image, StatusDone done) {
  if (Status s = docker::CheckImageName(image); !s) return Refused(engine_, std::move(done), s.take_error());
  engine_->Call("DELETE", "/images/" + image, "",
                [done = std::move(done)](Result<json::Doc> r) { done(Ok(std::move(r))); });
}

void DockerContainerEngine::CreateNetwork(const std::string& body, StatusDone done) {
  engine_->Call("POST", "/networks/create", body,
                [done = std::move(done)](Result<json::Doc> r) { done(Ok(std::move(r))); });
}

void DockerContainerEngine::ListNetworks(const std::string& node, Done<std::vector<ListedNetwork>> done) {
  engine_->Call("GET", "/networks?filters=" + docker::QueryEscape(NodeFilter(node, false)), "",
                [done = std::move(done)](Result<json::Doc> r) {
                  if (!r) return done(r.take_error());
                  done(ParseNetworkList(r->view()));
                });
}

void DockerContainerEngine::RemoveNetwork(const std::string& id_or_name, StatusDone done) {
  if (Status s = docker::CheckObjectName("network", id_or_name); !s)
    return Refused(engine_, std::move(done), s.take_error());
  engine_->Call("DELETE", "/networks/" + id_or_name, "",
                [done = std::move(done)](Result<json::Doc> r) { done(Ok(std::move(r))); });
}

std::unique_ptr<EventWatch> DockerContainerEngine::Watch(const std::string& node,
                                                         std::function<void(const ContainerEvent&)> on_event,
                                                         StatusDone on_end) {
  std::string filters = "{\"type\":[\"container\"],\"label\":[\"" + std::string(kLabelNode) + "=" + node + "\"]}";
  auto lines = std::make_shared<docker::LineSplitter>([on_event = std::move(on_event)](std::string_view line) {
    if (std::optional<ContainerEvent> e = ParseContainerEvent(line)) on_event(*e);
  });
  auto watch = std::make_unique<DockerWatch>();
  watch->stream = engine_->Open(
      "GET", "/events?filters=" + docker::QueryEscape(filters), "", [lines](std::string_view d) { lines->Feed(d); },
      std::move(on_end));
  return watch;
}

}  // namespace berth::agent
