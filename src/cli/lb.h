// `berth tg` (target groups) and `berth lb` (load balancers, listeners, rules):
// the control plane of load balancing (docs/load-balancing.md).
#pragma once

#include <string>
#include <vector>

namespace berth::cli {

int TargetGroupCommand(const std::vector<std::string>& args);
int LoadBalancerCommand(const std::vector<std::string>& args);

}  // namespace berth::cli
