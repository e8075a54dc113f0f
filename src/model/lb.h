// Load balancing's control plane in ELBv2 words (docs/load-balancing.md): target
// groups (a protocol, a port, attributes; their targets are the tasks of the
// services that name them), load balancers (the nodes of a cluster they run on,
// a `memberOf` expression), their listeners (a port and protocol on every member
// node, a default group) and the listeners' rules (host and path conditions that
// pick another group). All per cluster; the state keeps them (model/state.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::model {

// A target group's health check (ELB's HealthCheck* fields). Each target is
// probed by the agent of its own node (agent/target_checks.h), which reports
// its transitions; only a target passing it takes traffic.
struct HealthCheck {
  bool enabled = true;
  std::string protocol;             // HTTP or TCP; the group's own by default; empty on UDP groups (none)
  std::string path = "/";           // HTTP: the request's path (and query)
  std::string matcher = "200-399";  // HTTP: codes (200,302) or one range (200-399), 100-599
  int64_t interval_s = 10;          // 5-300
  int64_t timeout_s = 5;            // 2-120, less than the interval
  int64_t healthy_threshold = 3;    // 2-10 successes turn an unhealthy target healthy
  int64_t unhealthy_threshold = 2;  // 2-10 failures turn a target unhealthy
};

// The status codes an HTTP health check accepts: ELB's matcher, comma-separated
// codes ("200", "200,302") or one range ("200-399"), each of 100-599.
struct StatusMatcher {
  std::vector<std::pair<int, int>> ranges;  // [lo, hi], inclusive
  bool Accepts(int code) const;
};
// Fails with a message that names the bad part (the caller adds the path).
Result<StatusMatcher> ParseMatcher(std::string_view text);

struct TargetGroup {
  std::string cluster;
  std::string name;
  std::string arn;
  std::string protocol;                  // HTTP, TCP, UDP
  int64_t port = 0;                      // the port targets answer on in their container (informative, as ELB's)
  std::string algorithm;                 // least_outstanding_requests, least_connections, round_robin
  int64_t deregistration_delay_s = 300;  // attribute deregistration_delay.timeout_seconds
  int64_t slow_start_s = 0;              // attribute slow_start.duration_seconds
  bool proxy_protocol_v2 = false;        // attribute proxy_protocol_v2.enabled (TCP groups)
  bool stickiness = false;               // attribute stickiness.enabled
  std::string stickiness_type;           // attribute stickiness.type: lb_cookie (HTTP groups), source_ip (TCP groups)
  int64_t stickiness_cookie_s = 86400;   // attribute stickiness.lb_cookie.duration_seconds (1-604800)
  HealthCheck check;
  int64_t created_ms = 0;
};

struct ListenerRule {
  int64_t priority = 0;  // 1-50000, unique on its listener; lower is tried first
  std::vector<std::string> hosts;
  std::vector<std::string> paths;
  std::string target_group;
};

struct Listener {
  int64_t port = 0;
  std::string protocol;              // HTTP, HTTPS, TCP, TLS, UDP
  std::string default_target_group;  // empty on a redirecting listener
  std::vector<ListenerRule> rules;   // ascending priority
  // HTTPS and TLS: the secrets (model/secret.h) holding each certificate, its
  // chain and its key in PEM; the client's SNI name picks among them.
  std::vector<std::string> certificates;
  // HTTP: every request answered with a redirect to https on this port (0: none).
  int64_t redirect_port = 0;
  int64_t redirect_status = 301;
  // Peers (CIDRs) whose connections begin with a PROXY protocol header giving
  // the client's address (a load balancer in front of this one).
  std::vector<std::string> proxy_protocol_from;
};

// A certificate secret's value: its CERTIFICATE blocks (the certificate, then
// its chain) and its PRIVATE KEY block, each as PEM; errors say which is missing.
struct CertificatePem {
  std::string cert_pem;
  std::string key_pem;
};
Result<CertificatePem> SplitCertificateBundle(std::string_view pem);
// The protocol of the groups a listener of `listener_protocol` sends to: HTTPS
// to HTTP, TLS to TCP, the others their own.
std::string TargetProtocolOf(std::string_view listener_protocol);

struct LoadBalancer {
  std::string cluster;
  std::string name;
  std::string arn;
  std::string nodes;                // memberOf expression (sched/expr.h); empty: every node of the cluster
  std::vector<Listener> listeners;  // ascending port
  int64_t created_ms = 0;
  const Listener* FindListener(int64_t port) const {
    for (const Listener& l : listeners) {
      if (l.port == port) return &l;
    }
    return nullptr;
  }
};

// ELB's names: 1-32 letters, digits and hyphens, not beginning or ending with a hyphen.
Status ValidateLbName(std::string_view name, std::string_view field);
// arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID and
// loadbalancer/app/NAME/ID (net/ for TCP-only ones is not distinguished: berth's
// balancers carry both), ID 16 hex digits of the SHA-256 of "cluster/name".
std::string TargetGroupArn(std::string_view cluster, std::string_view name);
std::string LoadBalancerArn(std::string_view cluster, std::string_view name);
std::string ListenerArn(std::string_view cluster, std::string_view lb, int64_t port);
// The target group name in a target group ARN (any region and account), or "" when
// `arn` is not one.
std::string TargetGroupNameFromArn(std::string_view arn);

// A new target group from the API's body: name, protocol, port, algorithm
// (default by protocol) and attributes ({"deregistration_delay.timeout_seconds":
// "30", ...}: strings or numbers); errors name the field.
Result<TargetGroup> ParseTargetGroupBody(json::View body, std::string_view cluster);
// A group changed by ModifyTargetGroup's body: any of algorithm, attributes (each
// named one replaced, the others kept) and the health check's fields (each given
// one replaced); name, protocol and port cannot change (ELB's rule: delete and
// create). The result is checked as a new group's body would be.
Result<TargetGroup> ModifyTargetGroupBody(const TargetGroup& current, json::View body);
// A listener's own fields (port, protocol, defaultTargetGroup, certificates,
// redirectToHttps), without rules.
Result<Listener> ParseListenerBody(json::View body);
// A rule: priority, hosts, paths (at least one condition), targetGroup.
Result<ListenerRule> ParseRuleBody(json::View body);

// The persisted forms (and the command log's), and back.
std::string TargetGroupDoc(const TargetGroup& tg);
Result<TargetGroup> ParseTargetGroupDoc(std::string_view text);
std::string LoadBalancerDoc(const LoadBalancer& lb);
Result<LoadBalancer> ParseLoadBalancerDoc(std::string_view text);
json::Doc ListenerDocJson(const Listener& l);
json::Doc RuleDocJson(const ListenerRule& r);

// As the API shows them.
json::Doc TargetGroupJson(const TargetGroup& tg);
json::Doc LoadBalancerJson(const LoadBalancer& lb);

}  // namespace berth::model
