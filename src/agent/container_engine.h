// The seam between the agent's decisions and the Docker engine: the handful of
// Engine API calls the reconciler makes, typed. `DockerContainerEngine` makes
// them on a real engine (docker.h); unit tests give the reconciler a fake one
// (tests/unit/agent/fake_engine.h) and decide when each call answers.
//
// Every callback fires once, on the loop thread; none fires after the engine is
// destroyed. A failure whose kind is kUnavailable means the engine did not
// answer (as opposed to refusing).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::agent {

namespace docker {
class Engine;
}

// A container as listed: its id, Docker's state and its labels.
struct ListedContainer {
  std::string id;
  std::string state;  // created, running, exited, dead, ...
  std::map<std::string, std::string> labels;
};

// What inspecting a container shows.
struct ContainerStatus {
  std::string id;
  std::string state;
  bool exited = false;  // exited or dead
  int64_t exit_code = 0;
  bool oom = false;
  std::string health = "UNKNOWN";  // HEALTHY, UNHEALTHY or UNKNOWN
  std::string bindings = "[]";     // ECS networkBindings JSON
  std::string finished_at;         // RFC 3339, "0001-01-01T00:00:00Z" if it never ran
};

struct ListedNetwork {
  std::string id;
  std::string name;
  std::map<std::string, std::string> labels;
};

// One line of Docker's /events about a container of ours.
struct ContainerEvent {
  std::string action;     // start, die, destroy, health_status: healthy, ...
  std::string id;         // the container's
  std::string task;       // its berth.task label
  std::string container;  // its berth.container label
};

// Docker's answers, read. Each keeps only what berth uses and trusts nothing of
// the shape (a field missing, of another type, out of range reads as absent or
// zero); tests/fuzz/docker_answer_fuzzer.cc feeds them whatever bytes.
ContainerStatus ParseContainerInspect(json::View inspect);         // GET /containers/{id}/json
std::vector<ListedContainer> ParseContainerList(json::View list);  // GET /containers/json
std::vector<ListedNetwork> ParseNetworkList(json::View list);      // GET /networks
// One line of GET /events; nullopt when it is not JSON.
std::optional<ContainerEvent> ParseContainerEvent(std::string_view line);

// A running /events subscription; destroying it ends it without a callback.
class EventWatch {
 public:
  virtual ~EventWatch() = default;
};

class ContainerEngine {
 public:
  template <class T>
  using Done = std::function<void(Result<T>)>;
  using StatusDone = std::function<void(Status)>;

  virtual ~ContainerEngine() = default;

  // Containers labelled berth.node=`node`; `stopped_only`: exited, dead or created.
  virtual void List(const std::string& node, bool stopped_only, Done<std::vector<ListedContainer>> done) = 0;
  // By id or name; a container that does not exist is kNotFound.
  virtual void Inspect(const std::string& ref, Done<ContainerStatus> done) = 0;
  // POST /containers/create?name=`name` with the create body; the new id. A
  // container of that name that exists already is kConflict.
  virtual void Create(const std::string& name, const std::string& body, Done<std::string> done) = 0;
  virtual void Start(const std::string& id, StatusDone done) = 0;
  // SIGTERM, then SIGKILL after `timeout_s`; one already stopped is success.
  virtual void Stop(const std::string& id, int64_t timeout_s, StatusDone done) = 0;
  // Removes the container (forcibly) with its anonymous volumes.
  virtual void Remove(const std::string& id, StatusDone done) = 0;

  virtual void ImagePresent(const std::string& image, Done<bool> done) = 0;
  // `auth_json`: the X-Registry-Auth JSON, or empty.
  virtual void Pull(const std::string& image, const std::string& auth_json, StatusDone done) = 0;
  virtual void RemoveImage(const std::string& image, StatusDone done) = 0;

  // `body`: the POST /networks/create body; one that exists already is kConflict.
  virtual void CreateNetwork(const std::string& body, StatusDone done) = 0;
  virtual void ListNetworks(const std::string& node, Done<std::vector<ListedNetwork>> done) = 0;
  virtual void RemoveNetwork(const std::string& id_or_name, StatusDone done) = 0;

  // Docker's events about the node's containers, as they happen; `on_end` fires
  // once if the stream ends (the engine restarted or went away).
  virtual std::unique_ptr<EventWatch> Watch(const std::string& node,
                                            std::function<void(const ContainerEvent&)> on_event, StatusDone on_end) = 0;
};

// The engine interface over a real Docker engine (its Engine API client).
class DockerContainerEngine final : public ContainerEngine {
 public:
  explicit DockerContainerEngine(docker::Engine* engine) : engine_(engine) {}

  void List(const std::string& node, bool stopped_only, Done<std::vector<ListedContainer>> done) override;
  void Inspect(const std::string& ref, Done<ContainerStatus> done) override;
  void Create(const std::string& name, const std::string& body, Done<std::string> done) override;
  void Start(const std::string& id, StatusDone done) override;
  void Stop(const std::string& id, int64_t timeout_s, StatusDone done) override;
  void Remove(const std::string& id, StatusDone done) override;
  void ImagePresent(const std::string& image, Done<bool> done) override;
  void Pull(const std::string& image, const std::string& auth_json, StatusDone done) override;
  void RemoveImage(const std::string& image, StatusDone done) override;
  void CreateNetwork(const std::string& body, StatusDone done) override;
  void ListNetworks(const std::string& node, Done<std::vector<ListedNetwork>> done) override;
  void RemoveNetwork(const std::string& id_or_name, StatusDone done) override;
  std::unique_ptr<EventWatch> Watch(const std::string& node, std::function<void(const ContainerEvent&)> on_event,
                                    StatusDone on_end) override;

 private:
  docker::Engine* engine_;
};

}  // namespace berth::agent
