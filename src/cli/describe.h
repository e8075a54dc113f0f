// The readable forms of `berth service|task|node describe`: a block of labelled
// fields, then tables (a service's deployments and recent events, a task's
// containers). `--json` prints the ECS-shaped JSON instead.
#pragma once

#include <string>

#include "base/json.h"

namespace berth::cli {

// What `berth ps` shows of a task id: its last 12 characters, the random part
// (the first 12 are its creation time, alike for a batch). Every command and API
// route that takes a task id takes it (model::State::ShortTaskId).
std::string ShortTaskId(const std::string& id);

// `service` is the ECS Service JSON; at most `max_events` events, newest first.
void PrintServiceDescription(json::View service, size_t max_events = 10);
void PrintTaskDescription(json::View task);
void PrintNodeDescription(json::View node);

}  // namespace berth::cli
