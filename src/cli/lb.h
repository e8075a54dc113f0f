// `berth tg` (target groups) and `berth lb` (load balancers, listeners, rules):
// the control plane of load balancing (docs/load-balancing.md).
#pragma once

#include <string>
#include <vector>

#include "base/flags.h"
#include "base/json.h"
#include "base/result.h"

namespace berth::cli {

int TargetGroupCommand(const std::vector<std::string>& args);
int LoadBalancerCommand(const std::vector<std::string>& args);

// `berth service create NAME --taskdef TD --publish LISTEN:PORT[/http|/tcp]...
// [--on EXPRESSION]`, the short way (docs/load-balancing.md, "Publishing"): for
// each spec, the target group NAME-PORT (the task definition's container that
// maps PORT), the load balancer NAME on the nodes EXPRESSION chooses (default
// all) and its listener on LISTEN, each made unless it exists as asked. Sets
// `load_balancers` (the service's loadBalancers) and `created` (what was made,
// as the DELETE paths that undo it, in the order to run them); returns an exit
// code, the error printed. `health`: the health check settings (ELB's names,
// PublishHealth) of the HTTP and TCP groups it makes.
int Publish(const std::string& cluster, const std::string& service, const std::string& taskdef,
            const std::vector<std::string>& specs, const std::string& on, const json::Doc& health,
            json::Doc* load_balancers, std::vector<std::string>* created);
// The health check flags of `berth service create --publish` (--health-path,
// --health-codes, --no-health-check) as the settings Publish gives its groups.
Status PublishHealth(const flags::Parsed& p, json::Doc* health);
// Runs the DELETE paths of Publish's `created` (after the service failed to be made).
void Unpublish(const std::vector<std::string>& created);

}  // namespace berth::cli
