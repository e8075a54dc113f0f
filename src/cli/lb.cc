#include "cli/lb.h"

#include <algorithm>
#include <cstdio>

#include "base/flags.h"
#include "base/json.h"
#include "cli/common.h"
#include "cli/table.h"
#include "model/lb.h"
#include "net/http.h"

namespace berth::cli {

namespace http = net::http;

namespace {

std::string Q(const std::string& s) { return http::UrlEncode(s); }

const flags::FlagSpec kJsonFlag{"json", false, "", "print JSON instead of a table"};
const flags::FlagSpec kClusterFlag{"cluster", true, "NAME", "the cluster (default: default)"};

const char kTgUsage[] =
    "Usage:\n"
    "  berth tg create NAME --protocol HTTP|TCP|UDP --port N [--algorithm A] [--attr KEY=VALUE]...\n"
    "      a target group: the tasks of the services that name it (berth service create --lb) are its\n"
    "      targets. --algorithm least_outstanding_requests (HTTP's default), least_connections (TCP's\n"
    "      default) or round_robin. Attributes: deregistration_delay.timeout_seconds (0-3600, default\n"
    "      300), slow_start.duration_seconds (0, or 30-900), proxy_protocol_v2.enabled (true: TCP groups'\n"
    "      targets get a PROXY protocol v2 header with the client's address first), stickiness.enabled\n"
    "      (true: a client keeps its target), stickiness.type (lb_cookie, HTTP groups' and their default: a\n"
    "      BERTHLB cookie; source_ip, TCP groups' and their default: a hash of the client's address),\n"
    "      stickiness.lb_cookie.duration_seconds (1-604800, default 86400: the cookie's Max-Age)\n"
    "      Health check (each target probed by its own node's agent; only passing targets take traffic):\n"
    "      --health-path /PATH (default /), --health-codes 200-399 (codes, or one range), --health-protocol\n"
    "      HTTP|TCP (default the group's), --health-interval S (5-300, default 10), --health-timeout S\n"
    "      (2-120, default 5), --healthy-threshold N and --unhealthy-threshold N (2-10, default 3 and 2),\n"
    "      --no-health-check (every RUNNING target with its port bound takes traffic)\n"
    "  berth tg modify NAME [--algorithm A] [--attr KEY=VALUE]... [health check flags] [--health-check]\n"
    "      changes only what is given (protocol and port cannot change); the proxies and the agents'\n"
    "      checks take it at once, targets keep their health state\n"
    "  berth tg ls | describe NAME | rm NAME\n"
    "  berth tg health NAME   each target: task, node, address:port, state and reason; what each\n"
    "                         draining target's stop waits for; the proxies of its load balancers'\n"
    "                         nodes that are behind\n";

const char kLbUsage[] =
    "Usage:\n"
    "  berth lb create NAME [--nodes EXPRESSION]\n"
    "      a load balancer on the nodes of the cluster that EXPRESSION (the memberOf language, e.g.\n"
    "      'attribute:role == edge') chooses; default every node\n"
    "  berth lb ls | describe NAME | rm NAME      (rm takes its listeners and rules with it)\n"
    "  berth lb listener add LB --port N --protocol HTTP|HTTPS|TCP|TLS|UDP --default-tg TG [--cert SECRET]...\n"
    "      HTTPS and TLS listeners terminate TLS with the certificates in the SECRETs (each a PEM bundle:\n"
    "      the certificate, its chain, its key; berth secret create NAME --from-file site.pem); the\n"
    "      client's SNI name picks one\n"
    "  berth lb listener add LB --port 80 --protocol HTTP --redirect-https 443 [--redirect-status 302]\n"
    "      answers every request with a redirect to https\n"
    "  berth lb listener add ... --proxy-protocol-from CIDR...\n"
    "      connections from those peers (a load balancer in front) begin with a PROXY protocol v1 or v2\n"
    "      header, whose client address the listener uses (X-Forwarded-For, its own PROXY headers)\n"
    "  berth lb listener rm LB:PORT\n"
    "  berth lb rule add LB:PORT --priority N [--host H]... [--path P]... --tg TG\n"
    "      HTTP listeners only; rules are tried by ascending priority; * and ? are wildcards\n"
    "  berth lb rule rm LB:PORT --priority N\n"
    "A listener's port is unique in its cluster and never given to tasks on the load balancer's nodes.\n";

void PrintTargetGroups(json::View list) {
  Table t({"NAME", "PROTOCOL", "PORT", "ALGORITHM", "DEREG DELAY", "USED BY"});
  for (json::View tg : list) {
    std::string users;
    for (json::View u : tg.Get("usedBy")) users += (users.empty() ? "" : ", ") + std::string(u.String());
    t.Add({Str(tg, "targetGroupName"), Str(tg, "protocol"), Num(tg, "port"), Str(tg, "algorithm"),
           Num(tg, "deregistrationDelaySeconds") + "s", users.empty() ? "-" : users});
  }
  printf("%s", t.Render().c_str());
}

void PrintLoadBalancer(json::View lb) {
  std::string nodes(lb.Get("nodes").String());
  printf("%s  (cluster %s, nodes: %s)\n", Str(lb, "loadBalancerName").c_str(), Str(lb, "cluster").c_str(),
         nodes.empty() ? "all" : nodes.c_str());
  printf("  %s\n", Str(lb, "loadBalancerArn").c_str());
  for (json::View l : lb.Get("listeners")) {
    std::string to = Str(l, "defaultTargetGroup");
    if (json::View r = l.Get("redirectToHttps"); r.IsObject()) {
      to = "redirect " + Num(r, "statusCode") + " to https port " + Num(r, "port");
    }
    std::string certs;
    for (json::View c : l.Get("certificates"))
      certs += (certs.empty() ? "  (certificates " : ", ") + std::string(c.String());
    if (!certs.empty()) certs += ")";
    printf("  listener %s %s -> %s%s\n", Num(l, "port").c_str(), Str(l, "protocol").c_str(), to.c_str(), certs.c_str());
    for (json::View r : l.Get("rules")) {
      std::string cond;
      for (json::View h : r.Get("hosts")) cond += (cond.empty() ? "host " : ",") + std::string(h.String());
      std::string paths;
      for (json::View p : r.Get("paths")) paths += (paths.empty() ? "path " : ",") + std::string(p.String());
      if (!paths.empty()) cond += (cond.empty() ? "" : " and ") + paths;
      printf("    rule %s: %s -> %s\n", Num(r, "priority").c_str(), cond.c_str(), Str(r, "targetGroup").c_str());
    }
  }
}

// "LB:PORT" → LB and PORT.
bool SplitListener(const std::string& ref, std::string* lb, std::string* port) {
  size_t colon = ref.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == ref.size()) return false;
  *lb = ref.substr(0, colon);
  *port = ref.substr(colon + 1);
  return port->find_first_not_of("0123456789") == std::string::npos;
}

int PrintOrJson(const flags::Parsed& p, const CallResult& r, const char* key, void (*print)(json::View)) {
  if (r.exit) return r.exit;
  if (p.Has("json")) {
    printf("%s\n", r.body.Print().c_str());
  } else {
    print(r.body.view().Get(key));
  }
  return kOk;
}

void PrintHealth(json::View h) {
  Table t({"TASK", "NODE", "TARGET", "STATE", "REASON"});
  for (json::View x : h.Get("targets")) {
    std::string reason = Str(x, "reason").empty() ? "-" : Str(x, "reason");
    if (!Str(x, "description").empty()) reason += " (" + Str(x, "description") + ")";
    t.Add({Str(x, "taskId"), Str(x, "nodeId"), Str(x, "address") + ":" + Num(x, "port"), Str(x, "state"), reason});
  }
  printf("%s", t.Render().c_str());
  // A draining target still running: what its stop waits for.
  for (json::View x : h.Get("targets")) {
    json::View d = x.Get("drain");
    if (!d.IsObject()) continue;
    auto nodes = [](json::View list) {
      std::string out;
      for (json::View n : list) out += (out.empty() ? "" : ", ") + std::string(n.String());
      return out;
    };
    std::string unacked = nodes(d.Get("unacknowledgedBy")), in_flight = nodes(d.Get("inFlightOn"));
    std::string waits = unacked.empty() ? "" : "proxies on " + unacked + " to apply its removal";
    if (!in_flight.empty())
      waits += (waits.empty() ? "" : ", and ") + std::string("requests in flight on ") + in_flight;
    printf("task %s draining since %s, stopped once nothing is in flight (at most %ss): %s\n", Str(x, "taskId").c_str(),
           Str(d, "since").c_str(), Num(d, "deregistrationDelaySeconds").c_str(),
           waits.empty() ? "being released" : ("waiting for " + waits).c_str());
  }
  for (json::View n : h.Get("proxiesBehind")) {
    printf("proxy on node %s has applied version %s of %s\n", Str(n, "nodeId").c_str(),
           Num(n, "appliedVersion").c_str(), Num(n, "version").c_str());
  }
}

// What create and modify share: --algorithm, --attr and the health check's
// flags, into the body ELB names (only those given).
Status SettingsBody(const flags::Parsed& p, json::Doc* body) {
  if (p.Has("algorithm")) body->Set("algorithm", p.Get("algorithm"));
  if (p.Has("attr")) {
    json::Doc attrs = json::Doc::Object();
    for (const std::string& a : p.GetAll("attr")) {
      size_t eq = a.find('=');
      if (eq == std::string::npos || eq == 0) return Error::Invalid("--attr " + a + ": expected KEY=VALUE");
      attrs.Set(a.substr(0, eq), a.substr(eq + 1));
    }
    body->Set("attributes", attrs);
  }
  if (p.Has("no-health-check") && p.Has("health-check")) {
    return Error::Invalid("--health-check and --no-health-check contradict each other");
  }
  if (p.Has("no-health-check")) body->Set("healthCheckEnabled", false);
  if (p.Has("health-check")) body->Set("healthCheckEnabled", true);
  if (p.Has("health-path")) body->Set("healthCheckPath", p.Get("health-path"));
  if (p.Has("health-protocol")) body->Set("healthCheckProtocol", p.Get("health-protocol"));
  if (p.Has("health-codes")) body->Set("matcher", json::Doc::Object().Set("httpCode", p.Get("health-codes")));
  const std::pair<const char*, const char*> counts[] = {{"health-interval", "healthCheckIntervalSeconds"},
                                                        {"health-timeout", "healthCheckTimeoutSeconds"},
                                                        {"healthy-threshold", "healthyThresholdCount"},
                                                        {"unhealthy-threshold", "unhealthyThresholdCount"}};
  for (const auto& [flag, key] : counts) {
    if (!p.Has(flag)) continue;
    Result<uint64_t> n = flags::ParseCount(p.Get(flag), std::string("--") + flag);
    if (!n) return n.take_error();
    body->Set(key, static_cast<int64_t>(std::min<uint64_t>(*n, 1000000)));
  }
  return {};
}

}  // namespace

int TargetGroupCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      kJsonFlag,
      kClusterFlag,
      {"protocol", true, "HTTP|TCP|UDP", "create: the targets' protocol (UDP: no health check)"},
      {"port", true, "N", "create: the port targets answer on"},
      {"algorithm", true, "A", "create, modify: least_outstanding_requests, least_connections or round_robin"},
      {"attr", true, "KEY=VALUE", "create, modify: an attribute (repeatable)"},
      {"health-path", true, "/PATH", "create, modify: the HTTP health check's path"},
      {"health-codes", true, "CODES", "create, modify: the HTTP codes that pass (200,302 or 200-399)"},
      {"health-protocol", true, "HTTP|TCP", "create, modify: the health check's protocol"},
      {"health-interval", true, "S", "create, modify: seconds between checks of a target"},
      {"health-timeout", true, "S", "create, modify: seconds a check may take"},
      {"healthy-threshold", true, "N", "create, modify: passes that make an unhealthy target healthy"},
      {"unhealthy-threshold", true, "N", "create, modify: failures that make a target unhealthy"},
      {"no-health-check", false, "", "create, modify: no health check"},
      {"health-check", false, "", "modify: turn the health check back on"},
  };
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("tg", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s\nFlags:\n%s", kTgUsage, flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  std::string cluster = p->Get("cluster", "default");
  if (sub == "ls" || sub == "list") {
    return PrintOrJson(*p, Call("GET", "/v1/targetgroups?cluster=" + Q(cluster)), "targetGroups", PrintTargetGroups);
  }
  if (p->positional.size() != 2) return UsageError("tg", sub + " takes one target group NAME");
  const std::string& name = p->positional[1];
  std::string path = "/v1/targetgroups/" + Q(name) + "?cluster=" + Q(cluster);
  if (sub == "create") {
    if (!p->Has("protocol") || !p->Has("port")) return UsageError("tg", "create needs --protocol and --port");
    Result<uint64_t> port = flags::ParseCount(p->Get("port"), "--port");
    if (!port) return UsageError("tg", port.error().message);
    json::Doc body = json::Doc::Object();
    body.Set("cluster", cluster).Set("name", name).Set("protocol", p->Get("protocol"));
    body.Set("port", static_cast<int64_t>(*port));
    if (Status s = SettingsBody(*p, &body); !s) return UsageError("tg", s.error().message);
    CallResult r = Call("POST", "/v1/targetgroups", body.Print());
    if (r.exit) return r.exit;
    json::View tg = r.body.view().Get("targetGroup");
    if (p->Has("json"))
      printf("%s\n", tg.Print().c_str());
    else
      printf("created target group %s (%s)\n", Str(tg, "targetGroupName").c_str(), Str(tg, "targetGroupArn").c_str());
    return kOk;
  }
  if (sub == "modify") {
    if (p->Has("protocol") || p->Has("port")) {
      return UsageError("tg", "a target group's protocol and port cannot change: create another");
    }
    json::Doc body = json::Doc::Object();
    if (Status s = SettingsBody(*p, &body); !s) return UsageError("tg", s.error().message);
    if (body.view().Size() == 0) return UsageError("tg", "modify: no change given");
    CallResult r = Call("PATCH", path, body.Print());
    if (r.exit) return r.exit;
    json::View tg = r.body.view().Get("targetGroup");
    if (p->Has("json"))
      printf("%s\n", tg.Print().c_str());
    else
      printf("modified target group %s\n", Str(tg, "targetGroupName").c_str());
    return kOk;
  }
  if (sub == "describe") {
    CallResult r = Call("GET", path);
    if (r.exit) return r.exit;
    printf("%s\n", r.body.view().Get("targetGroup").Print().c_str());
    return kOk;
  }
  if (sub == "health") {
    return PrintOrJson(*p, Call("GET", "/v1/targetgroups/" + Q(name) + "/health?cluster=" + Q(cluster)), "health",
                       PrintHealth);
  }
  if (sub == "rm" || sub == "delete") {
    CallResult r = Call("DELETE", path);
    if (r.exit) return r.exit;
    printf("removed target group %s\n", name.c_str());
    return kOk;
  }
  return UsageError("tg", "unknown subcommand '" + sub + "'");
}

int LoadBalancerCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      kJsonFlag,
      kClusterFlag,
      {"nodes", true, "EXPRESSION", "create: the nodes it runs on (memberOf language; default all)"},
      {"port", true, "N", "listener add: the port"},
      {"protocol", true, "HTTP|HTTPS|TCP|TLS|UDP", "listener add: the protocol"},
      {"default-tg", true, "TG", "listener add: the target group taking what no rule matches"},
      {"cert", true, "SECRET", "listener add: HTTPS/TLS: a secret holding a certificate and its key (repeatable)"},
      {"redirect-https", true, "PORT", "listener add: HTTP: redirect every request to https on PORT"},
      {"redirect-status", true, "301|302", "listener add: with --redirect-https (default 301)"},
      {"proxy-protocol-from", true, "CIDR",
       "listener add: connections from these peers start with a PROXY protocol header (repeatable)"},
      {"priority", true, "N", "rule add/rm: 1-50000, lower first"},
      {"host", true, "H", "rule add: a Host condition (repeatable)"},
      {"path", true, "P", "rule add: a path condition (repeatable)"},
      {"tg", true, "TG", "rule add: the target group"},
  };
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("lb", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s\nFlags:\n%s", kLbUsage, flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  std::string cluster = p->Get("cluster", "default");
  std::string cq = "?cluster=" + Q(cluster);
  if (sub == "ls" || sub == "list") {
    CallResult r = Call("GET", "/v1/loadbalancers" + cq);
    if (r.exit) return r.exit;
    if (p->Has("json")) {
      printf("%s\n", r.body.Print().c_str());
      return kOk;
    }
    Table t({"NAME", "NODES", "LISTENERS"});
    for (json::View lb : r.body.view().Get("loadBalancers")) {
      std::string listeners;
      for (json::View l : lb.Get("listeners")) {
        listeners += (listeners.empty() ? "" : ", ") + Num(l, "port") + "/" + Str(l, "protocol") + "->" +
                     Str(l, "defaultTargetGroup");
      }
      std::string nodes = Str(lb, "nodes");
      t.Add({Str(lb, "loadBalancerName"), nodes.empty() ? "all" : nodes, listeners.empty() ? "-" : listeners});
    }
    printf("%s", t.Render().c_str());
    return kOk;
  }
  if (sub == "create" || sub == "describe" || sub == "rm" || sub == "delete") {
    if (p->positional.size() != 2) return UsageError("lb", sub + " takes one load balancer NAME");
    const std::string& name = p->positional[1];
    CallResult r;
    if (sub == "create") {
      json::Doc body = json::Doc::Object();
      body.Set("cluster", cluster).Set("name", name);
      if (p->Has("nodes")) body.Set("nodes", p->Get("nodes"));
      r = Call("POST", "/v1/loadbalancers", body.Print());
    } else if (sub == "describe") {
      r = Call("GET", "/v1/loadbalancers/" + Q(name) + cq);
    } else {
      r = Call("DELETE", "/v1/loadbalancers/" + Q(name) + cq);
      if (r.exit) return r.exit;
      printf("removed load balancer %s\n", name.c_str());
      return kOk;
    }
    if (r.exit) return r.exit;
    json::View lb = r.body.view().Get("loadBalancer");
    if (p->Has("json"))
      printf("%s\n", lb.Print().c_str());
    else if (sub == "create")
      printf("created load balancer %s (%s)\n", Str(lb, "loadBalancerName").c_str(),
             Str(lb, "loadBalancerArn").c_str());
    else
      PrintLoadBalancer(lb);
    return kOk;
  }
  if (sub == "listener" || sub == "rule") {
    if (p->positional.size() != 3) return UsageError("lb", sub + " takes add or rm and a load balancer");
    const std::string& verb = p->positional[1];
    const std::string& ref = p->positional[2];
    std::string lb, port;
    CallResult r;
    if (sub == "listener" && verb == "add") {
      if (!p->Has("port") || !p->Has("protocol") || !(p->Has("default-tg") || p->Has("redirect-https"))) {
        return UsageError("lb", "listener add needs --port, --protocol and --default-tg (or --redirect-https)");
      }
      Result<uint64_t> n = flags::ParseCount(p->Get("port"), "--port");
      if (!n) return UsageError("lb", n.error().message);
      json::Doc body = json::Doc::Object();
      body.Set("port", static_cast<int64_t>(*n)).Set("protocol", p->Get("protocol"));
      if (p->Has("default-tg")) body.Set("defaultTargetGroup", p->Get("default-tg"));
      if (p->Has("cert")) {
        json::Doc certs = json::Doc::Array();
        for (const std::string& c : p->GetAll("cert")) certs.Push(c);
        body.Set("certificates", certs);
      }
      if (p->Has("redirect-https")) {
        Result<uint64_t> to = flags::ParseCount(p->Get("redirect-https"), "--redirect-https");
        if (!to) return UsageError("lb", to.error().message);
        json::Doc redirect = json::Doc::Object();
        redirect.Set("port", static_cast<int64_t>(*to));
        if (p->Has("redirect-status")) {
          Result<uint64_t> status = flags::ParseCount(p->Get("redirect-status"), "--redirect-status");
          if (!status) return UsageError("lb", status.error().message);
          redirect.Set("statusCode", static_cast<int64_t>(*status));
        }
        body.Set("redirectToHttps", redirect);
      }
      if (p->Has("proxy-protocol-from")) {
        json::Doc from = json::Doc::Array();
        for (const std::string& c : p->GetAll("proxy-protocol-from")) from.Push(c);
        body.Set("proxyProtocolFrom", from);
      }
      r = Call("POST", "/v1/loadbalancers/" + Q(ref) + "/listeners" + cq, body.Print());
    } else if (!SplitListener(ref, &lb, &port)) {
      return UsageError("lb", sub + " " + verb + ": name the listener as LB:PORT, e.g. edge:80");
    } else if (sub == "listener" && (verb == "rm" || verb == "delete")) {
      r = Call("DELETE", "/v1/loadbalancers/" + Q(lb) + "/listeners/" + port + cq);
    } else if (sub == "rule" && (verb == "add" || verb == "rm" || verb == "delete")) {
      if (!p->Has("priority")) return UsageError("lb", "rule " + verb + " needs --priority");
      Result<uint64_t> priority = flags::ParseCount(p->Get("priority"), "--priority");
      if (!priority) return UsageError("lb", priority.error().message);
      std::string listener = "/v1/loadbalancers/" + Q(lb) + "/listeners/" + port + "/rules";
      if (verb == "add") {
        if (!p->Has("tg")) return UsageError("lb", "rule add needs --tg");
        json::Doc hosts = json::Doc::Array(), paths = json::Doc::Array();
        for (const std::string& h : p->GetAll("host")) hosts.Push(h);
        for (const std::string& x : p->GetAll("path")) paths.Push(x);
        json::Doc body = json::Doc::Object();
        body.Set("priority", static_cast<int64_t>(*priority)).Set("hosts", hosts).Set("paths", paths);
        body.Set("targetGroup", p->Get("tg"));
        r = Call("POST", listener + cq, body.Print());
      } else {
        r = Call("DELETE", listener + "/" + std::to_string(*priority) + cq);
      }
    } else {
      return UsageError("lb", "unknown subcommand '" + sub + " " + verb + "'");
    }
    if (r.exit) return r.exit;
    if (p->Has("json")) {
      printf("%s\n", r.body.Print().c_str());
    } else {
      PrintLoadBalancer(r.body.view().Get("loadBalancer"));
    }
    return kOk;
  }
  return UsageError("lb", "unknown subcommand '" + sub + "'");
}

Status PublishHealth(const flags::Parsed& p, json::Doc* health) {
  *health = json::Doc::Object();
  if (p.Has("no-health-check") && (p.Has("health-path") || p.Has("health-codes"))) {
    return Error::Invalid("--no-health-check: no health check takes --health-path or --health-codes");
  }
  return SettingsBody(p, health);
}

int Publish(const std::string& cluster, const std::string& service, const std::string& taskdef,
            const std::vector<std::string>& specs, const std::string& on, const json::Doc& health,
            json::Doc* load_balancers, std::vector<std::string>* created) {
  struct Spec {
    int64_t listen = 0, port = 0;
    std::string protocol, group, container;
  };
  std::vector<Spec> wanted;
  for (const std::string& text : specs) {
    Spec x;
    std::string ports = text;
    x.protocol = "HTTP";
    if (size_t slash = text.find('/'); slash != std::string::npos) {
      std::string proto = text.substr(slash + 1);
      for (char& c : proto) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
      if (proto != "HTTP" && proto != "TCP" && proto != "UDP") {
        return UsageError("service", "--publish " + text + ": the protocol after / must be http, tcp or udp");
      }
      x.protocol = proto;
      ports = text.substr(0, slash);
    }
    size_t colon = ports.find(':');
    Result<uint64_t> listen = colon == std::string::npos ? Result<uint64_t>(Error::Invalid(""))
                                                         : flags::ParseCount(ports.substr(0, colon), "port");
    Result<uint64_t> port = colon == std::string::npos ? Result<uint64_t>(Error::Invalid(""))
                                                       : flags::ParseCount(ports.substr(colon + 1), "port");
    if (!listen || !port || *listen < 1 || *listen > 65535 || *port < 1 || *port > 65535) {
      return UsageError("service", "--publish " + text + ": expected LISTEN:PORT[/http|/tcp|/udp], e.g. 80:8080/http");
    }
    x.listen = static_cast<int64_t>(*listen);
    x.port = static_cast<int64_t>(*port);
    // A UDP port has a group of its own: DNS publishes 53/tcp and 53/udp.
    x.group = service + "-" + std::to_string(x.port) + (x.protocol == "UDP" ? "-udp" : "");
    if (Status s = model::ValidateLbName(x.group, "target group"); !s) {
      return UsageError("service", "--publish " + text + ": the target group's name " + x.group +
                                       " is not a valid one (" + s.error().message + "); use berth tg and --lb");
    }
    wanted.push_back(std::move(x));
  }
  // The container that maps each port, from the task definition.
  CallResult td = Call("GET", "/v1/taskdefinitions/" + Q(taskdef));
  if (td.exit) return td.exit;
  for (Spec& x : wanted) {
    std::vector<std::string> found;
    for (json::View c : td.body.view().Get("taskDefinition").Get("containerDefinitions")) {
      for (json::View m : c.Get("portMappings")) {
        std::string proto(m.Get("protocol").String());
        if (m.Get("containerPort").IntIn(0, 65535, 0) == x.port && (proto == "udp") == (x.protocol == "UDP")) {
          found.push_back(Str(c, "name"));
        }
      }
    }
    if (found.size() != 1) {
      std::string names;
      for (const std::string& n : found) names += (names.empty() ? "" : ", ") + n;
      fprintf(stderr, "berth: --publish: task definition %s %s\n", taskdef.c_str(),
              found.empty() ? ("maps no " + std::string(x.protocol == "UDP" ? "UDP" : "TCP") + " container port " +
                               std::to_string(x.port))
                                  .c_str()
                            : ("maps container port " + std::to_string(x.port) + " in several containers (" + names +
                               "): name one with berth tg and --lb")
                                  .c_str());
      return kRefused;
    }
    x.container = found[0];
  }
  std::string cq = "?cluster=" + Q(cluster);
  CallResult tgs = Call("GET", "/v1/targetgroups" + cq);
  if (tgs.exit) return tgs.exit;
  CallResult lbs = Call("GET", "/v1/loadbalancers" + cq);
  if (lbs.exit) return lbs.exit;
  json::View lb;
  for (json::View x : lbs.body.view().Get("loadBalancers")) {
    if (Str(x, "loadBalancerName") == service) lb = x;
  }
  auto fail = [&](const std::string& message) {
    fprintf(stderr, "berth: --publish: %s\n", message.c_str());
    Unpublish(*created);
    created->clear();
    return kRefused;
  };
  for (const Spec& x : wanted) {
    json::View have;
    for (json::View g : tgs.body.view().Get("targetGroups")) {
      if (Str(g, "targetGroupName") == x.group) have = g;
    }
    if (have.valid() && Str(have, "protocol") != x.protocol) {
      return fail("target group " + x.group + " exists with protocol " + Str(have, "protocol") + ", not " + x.protocol);
    }
    if (have.valid()) continue;
    json::Doc body = json::Doc::Object();
    body.Set("cluster", cluster).Set("name", x.group).Set("protocol", x.protocol).Set("port", x.port);
    // A UDP group has no health check to set.
    if (x.protocol != "UDP") {
      for (json::View v : health.view()) body.Set(std::string(v.Key()), json::Doc::Copy(v));
    }
    if (CallResult r = Call("POST", "/v1/targetgroups", body.Print()); r.exit) return fail("the target group failed");
    created->insert(created->begin(), "/v1/targetgroups/" + Q(x.group) + cq);
  }
  if (!lb.valid()) {
    json::Doc body = json::Doc::Object();
    body.Set("cluster", cluster).Set("name", service);
    if (!on.empty()) body.Set("nodes", on);
    if (CallResult r = Call("POST", "/v1/loadbalancers", body.Print()); r.exit) return fail("the load balancer failed");
    created->insert(created->begin(), "/v1/loadbalancers/" + Q(service) + cq);
  } else if (!on.empty() && Str(lb, "nodes") != on) {
    return fail("load balancer " + service + " exists on other nodes (" + Str(lb, "nodes") + "), not " + on);
  }
  for (const Spec& x : wanted) {
    json::View listener;
    if (lb.valid()) {
      for (json::View l : lb.Get("listeners")) {
        if (l.Get("port").IntIn(0, 65535, 0) == x.listen) listener = l;
      }
    }
    if (listener.valid()) {
      if (Str(listener, "defaultTargetGroup") != x.group || Str(listener, "protocol") != x.protocol) {
        return fail("load balancer " + service + " listens on " + std::to_string(x.listen) + " (" +
                    Str(listener, "protocol") + ") for target group " + Str(listener, "defaultTargetGroup") + ", not " +
                    x.group + " (" + x.protocol + ")");
      }
      continue;
    }
    json::Doc body = json::Doc::Object();
    body.Set("port", x.listen).Set("protocol", x.protocol).Set("defaultTargetGroup", x.group);
    if (CallResult r = Call("POST", "/v1/loadbalancers/" + Q(service) + "/listeners" + cq, body.Print()); r.exit) {
      return fail("the listener on " + std::to_string(x.listen) + " failed");
    }
    created->insert(created->begin(),
                    "/v1/loadbalancers/" + Q(service) + "/listeners/" + std::to_string(x.listen) + cq);
  }
  *load_balancers = json::Doc::Array();
  for (const Spec& x : wanted) {
    load_balancers->Push(json::Doc::Object()
                             .Set("targetGroupName", x.group)
                             .Set("containerName", x.container)
                             .Set("containerPort", x.port));
  }
  return kOk;
}

void Unpublish(const std::vector<std::string>& created) {
  for (const std::string& path : created) Call("DELETE", path);
}

}  // namespace berth::cli
