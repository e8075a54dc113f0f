"""Load balancing's control plane (docs/load-balancing.md) with the real binary:
target groups, load balancers, listeners and rules through the CLI and the API,
their errors and persistence; services with loadBalancers on `berth agent
--simulate` nodes, whose targets and proxy documents reach the member nodes;
`aws ecs create-service --load-balancers`.

Waits are deadlines for a slow machine, never claims about speed.
"""

import json
import subprocess
import threading

from harness import Agent, Server, check, cli, expect_error, expect_exit, expect_status, wait_until
from test_aws import access_key, aws, aws_env

LONG = 60.0


def env_for(s):
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}


def berth(s, *args, code=0):
    return expect_exit(cli(list(args), env=env_for(s)), code, "berth " + " ".join(args))


def agent_token(s):
    return expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201).json()["token"]["secret"]


def register_web(s, family="web"):
    body = {"family": family,
            "containerDefinitions": [{"name": "app", "image": "nginx:latest", "memory": 64,
                                      "portMappings": [{"containerPort": 8080}]}]}
    expect_status(s.request("POST", "/v1/taskdefinitions", body), 201, "register " + family)


def test_lb_cli_and_api_crud_errors_and_restart():
    with Server() as s:
        berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080",
              "--attr", "deregistration_delay.timeout_seconds=30")
        berth(s, "tg", "create", "api", "--protocol", "HTTP", "--port", "8081", "--algorithm", "round_robin")
        berth(s, "tg", "create", "db", "--protocol", "TCP", "--port", "5432")
        p = berth(s, "tg", "create", "bad", "--protocol", "HTTP", "--port", "80", "--attr", "nope=1", code=1)
        check("attributes.nope" in p.stderr, "unknown attribute error: %r" % p.stderr)
        expect_error(s.request("POST", "/v1/targetgroups", {"name": "x", "protocol": "QUIC", "port": 53}),
                     400, "InvalidParameter")
        expect_error(s.request("POST", "/v1/targetgroups", {"name": "web", "protocol": "HTTP", "port": 1}),
                     409, "DuplicateTargetGroupName")

        berth(s, "lb", "create", "edge", "--nodes", "attribute:role == edge")
        berth(s, "lb", "create", "inner")
        p = berth(s, "lb", "create", "broken", "--nodes", "attribute:role ==", code=1)
        check("nodes:" in p.stderr, "bad expression error: %r" % p.stderr)
        expect_error(s.request("POST", "/v1/loadbalancers", {"name": "grp", "nodes": "task:group == web"}),
                     400, "InvalidParameter")

        berth(s, "lb", "listener", "add", "edge", "--port", "80", "--protocol", "HTTP", "--default-tg", "web")
        berth(s, "lb", "listener", "add", "edge", "--port", "5432", "--protocol", "TCP", "--default-tg", "db")
        p = berth(s, "lb", "listener", "add", "edge", "--port", "81", "--protocol", "HTTP", "--default-tg", "nope",
                  code=1)
        check("target group nope does not exist" in p.stderr, "unknown tg: %r" % p.stderr)
        p = berth(s, "lb", "listener", "add", "inner", "--port", "80", "--protocol", "HTTP", "--default-tg", "web",
                  code=1)
        check("already a listener of load balancer edge" in p.stderr, "duplicate port: %r" % p.stderr)
        expect_error(s.request("POST", "/v1/loadbalancers/edge/listeners", {"port": 82, "protocol": "HTTP",
                                                                             "defaultTargetGroup": "db"}),
                     400, "InvalidParameter")
        berth(s, "lb", "rule", "add", "edge:80", "--priority", "10", "--host", "api.example.com", "--path", "/v1/*",
              "--tg", "api")
        p = berth(s, "lb", "rule", "add", "edge:80", "--priority", "10", "--path", "/x", "--tg", "web", code=1)
        check("priority 10" in p.stderr, "duplicate priority: %r" % p.stderr)
        berth(s, "lb", "rule", "add", "edge:5432", "--priority", "1", "--path", "/x", "--tg", "db", code=1)

        # A group in use cannot go; the answer says what uses it.
        msg = expect_error(s.request("DELETE", "/v1/targetgroups/api"), 409, "ResourceInUse")
        check("rule edge:80/10" in msg, "in use by: %r" % msg)
        p = berth(s, "tg", "rm", "web", code=1)
        check("listener edge:80" in p.stderr, "tg rm in use: %r" % p.stderr)

        # Read-only tokens read, never change.
        ro = expect_status(s.request("POST", "/v1/tokens", {"role": "read-only"}), 201).json()["token"]["secret"]
        expect_status(s.request("GET", "/v1/loadbalancers", token=ro), 200)
        expect_status(s.request("POST", "/v1/targetgroups", {"name": "z", "protocol": "TCP", "port": 1}, token=ro),
                      403)

        lb = expect_status(s.request("GET", "/v1/loadbalancers/edge"), 200).json()["loadBalancer"]
        check(lb["loadBalancerArn"].startswith("arn:aws:elasticloadbalancing:local:000000000000:loadbalancer/app/edge/"),
              "lb ARN %r" % lb["loadBalancerArn"])
        check([(l["port"], l["protocol"], l["defaultTargetGroup"]) for l in lb["listeners"]] ==
              [(80, "HTTP", "web"), (5432, "TCP", "db")], "listeners %r" % lb["listeners"])
        check(lb["listeners"][0]["rules"] == [{"priority": 10, "hosts": ["api.example.com"], "paths": ["/v1/*"],
                                               "targetGroup": "api"}], "rules %r" % lb["listeners"][0]["rules"])
        p = berth(s, "lb", "describe", "edge")
        check("rule 10: host api.example.com and path /v1/* -> api" in p.stdout, "describe: %r" % p.stdout)

        # A group's settings change in place; what is not named stays.
        berth(s, "tg", "modify", "web", "--attr", "deregistration_delay.timeout_seconds=45", "--health-path", "/ready")
        p = berth(s, "tg", "modify", "web", "--protocol", "TCP", code=2)
        check("protocol and port cannot change" in p.stderr, "modify protocol: %r" % p.stderr)
        p = berth(s, "tg", "modify", "web", "--health-timeout", "30", code=1)
        check("healthCheckTimeoutSeconds: must be less than" in p.stderr, "modify timeout: %r" % p.stderr)
        msg = expect_error(s.request("PATCH", "/v1/targetgroups/web", {"port": 1}), 400, "InvalidParameter")
        check(msg.startswith("port: a target group's port cannot change"), "PATCH port: %r" % msg)
        expect_error(s.request("PATCH", "/v1/targetgroups/nope", {"algorithm": "round_robin"}), 404,
                     "TargetGroupNotFound")
        ro_token = expect_status(s.request("POST", "/v1/tokens", {"role": "read-only"}), 201).json()["token"]["secret"]
        expect_status(s.request("PATCH", "/v1/targetgroups/web", {"algorithm": "round_robin"}, token=ro_token), 403)
        web = expect_status(s.request("GET", "/v1/targetgroups/web"), 200).json()["targetGroup"]
        check(web["deregistrationDelaySeconds"] == 45 and web["healthCheckPath"] == "/ready"
              and web["algorithm"] == "least_outstanding_requests" and web["port"] == 8080, "modified: %r" % web)

        s.stop()
        s.start()
        after = expect_status(s.request("GET", "/v1/loadbalancers/edge"), 200).json()["loadBalancer"]
        check(after["listeners"] == lb["listeners"], "after restart: %r" % after)
        tgs = json.loads(berth(s, "tg", "ls", "--json").stdout)["targetGroups"]
        check(sorted(t["targetGroupName"] for t in tgs) == ["api", "db", "web"], "tg ls after restart: %r" % tgs)
        web = [t for t in tgs if t["targetGroupName"] == "web"][0]
        check(web["deregistrationDelaySeconds"] == 45 and web["healthCheckPath"] == "/ready",
              "attribute after restart: %r" % web)

        berth(s, "lb", "rule", "rm", "edge:80", "--priority", "10")
        berth(s, "tg", "rm", "api")
        berth(s, "lb", "listener", "rm", "edge:5432")
        berth(s, "tg", "rm", "db")
        berth(s, "lb", "rm", "edge")
        berth(s, "tg", "rm", "web")
        check(json.loads(berth(s, "tg", "ls", "--json").stdout)["targetGroups"] == [], "groups left")


def test_lb_udp_group_and_listener_from_the_cli():
    with Server() as s:
        p = berth(s, "tg", "create", "dns", "--protocol", "UDP", "--port", "53", "--health-path", "/", code=1)
        check("healthCheckPath: a UDP target group has no health check" in p.stderr, "UDP health path: %r" % p.stderr)
        berth(s, "tg", "create", "dns", "--protocol", "UDP", "--port", "53")
        tg = expect_status(s.request("GET", "/v1/targetgroups/dns"), 200).json()["targetGroup"]
        check(tg["protocol"] == "UDP" and tg["healthCheckEnabled"] is False and tg["algorithm"] == "least_connections",
              "UDP group: %r" % tg)
        berth(s, "tg", "create", "db", "--protocol", "TCP", "--port", "5432")
        berth(s, "lb", "create", "edge", "--nodes", "attribute:role == dns")
        p = berth(s, "lb", "listener", "add", "edge", "--port", "5353", "--protocol", "TCP", "--default-tg", "dns",
                  code=1)
        check("dns is UDP" in p.stderr, "a TCP listener to a UDP group: %r" % p.stderr)
        berth(s, "lb", "listener", "add", "edge", "--port", "5353", "--protocol", "UDP", "--default-tg", "dns")
        berth(s, "lb", "rule", "add", "edge:5353", "--priority", "1", "--path", "/x", "--tg", "dns", code=1)
        s.stop()
        s.start()
        lb = expect_status(s.request("GET", "/v1/loadbalancers/edge"), 200).json()["loadBalancer"]
        check([(l["port"], l["protocol"], l["defaultTargetGroup"]) for l in lb["listeners"]] == [(5353, "UDP", "dns")],
              "listeners after restart: %r" % lb["listeners"])
        berth(s, "lb", "rm", "edge")
        berth(s, "tg", "rm", "dns")


def read_desired_line(s, node, token):
    """The first line of node `node`'s desired-state stream, read with the
    agent's token (the simulated node reconnects after)."""
    conn = s.http_connection()
    try:
        conn.request("GET", "/v1/agent/nodes/%s/desired" % node, headers={"Authorization": "Bearer " + token})
        r = conn.getresponse()
        check(r.status == 200, "desired stream of %s: %d" % (node, r.status))
        return json.loads(r.readline())
    finally:
        conn.close()


def test_lb_service_targets_reach_member_nodes_on_simulated_agents():
    with Server(args=["--heartbeat-interval", "500ms"]) as s:
        token = agent_token(s)
        with Agent(s, 3, token, id_prefix="lbsim", args=["--zones", "3"]):
            wait_until(lambda: len(expect_status(s.request("GET", "/v1/nodes"), 200).json()["containerInstances"])
                       == 3, wait=LONG, step=0.2, what="three simulated nodes")
            nodes = expect_status(s.request("GET", "/v1/nodes"), 200).json()["containerInstances"]
            addresses = {n["nodeId"]: n["address"] for n in nodes}
            check(len(set(addresses.values())) == 3 and all(a.startswith("10.") for a in addresses.values()),
                  "simulated addresses %r" % addresses)
            edge = [n["nodeId"] for n in nodes if {"name": "zone", "value": "zone-a"} in n["attributes"]]
            check(len(edge) == 1, "one node in zone-a: %r" % nodes)
            edge = edge[0]
            other = [n for n in addresses if n != edge][0]

            berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080")
            berth(s, "lb", "create", "edge", "--nodes", "attribute:zone == zone-a")
            berth(s, "lb", "listener", "add", "edge", "--port", "80", "--protocol", "HTTP", "--default-tg", "web")
            register_web(s)
            p = berth(s, "service", "create", "web", "--taskdef", "web", "--count", "3", "--lb", "web:nope:8080",
                      code=1)
            check("containerName" in p.stderr, "bad container: %r" % p.stderr)
            berth(s, "service", "create", "web", "--taskdef", "web", "--count", "3", "--lb", "web:app:8080")
            svc = expect_status(s.request("GET", "/v1/services/web"), 200).json()["service"]
            check([(l["targetGroupName"], l["containerName"], l["containerPort"]) for l in svc["loadBalancers"]] ==
                  [("web", "app", 8080)], "service loadBalancers %r" % svc["loadBalancers"])

            def healthy():
                h = json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]
                ok = len(h["targets"]) == 3 and all(t["state"] == "healthy" for t in h["targets"])
                return ok and h
            health = wait_until(healthy, wait=LONG, step=0.3, what="three healthy targets")
            for t in health["targets"]:
                check(t["address"] == addresses[t["nodeId"]] and t["port"] >= 32768, "target %r" % t)
            table = berth(s, "tg", "health", "web").stdout
            check("healthy" in table and health["targets"][0]["address"] in table, "tg health table: %r" % table)

            # The member's stream carries the document with every target; a node
            # of no load balancer gets none.
            line = read_desired_line(s, edge, token)
            proxy = line.get("proxy")
            check(proxy and proxy["version"] > 0, "no proxy document for %s: %r" % (edge, line))
            check([(l["port"], l["protocol"], l["defaultTargetGroup"]) for l in proxy["listeners"]] ==
                  [(80, "HTTP", "web")], "document listeners %r" % proxy["listeners"])
            targets = proxy["targetGroups"][0]["targets"]
            check(sorted((t["id"], t["address"], t["port"], t["state"]) for t in targets) ==
                  sorted((t["taskId"], t["address"], t["port"], "healthy") for t in health["targets"]),
                  "document targets %r vs health %r" % (targets, health["targets"]))
            check("proxy" not in read_desired_line(s, other, token), "a non-member got a proxy document")

            # The member applies it (the simulator reports the version) and none is behind.
            def caught_up():
                lb = expect_status(s.request("GET", "/v1/loadbalancers/edge"), 200).json()["loadBalancer"]
                m = lb["members"]
                return len(m) == 1 and m[0]["appliedVersion"] == m[0]["version"] and m
            members = wait_until(caught_up, wait=LONG, step=0.3, what="the member's proxy at the latest version")
            check(members[0]["nodeId"] == edge and members[0]["address"] == addresses[edge], "members %r" % members)
            h = json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]
            check(h["proxiesBehind"] == [] and [p["nodeId"] for p in h["proxies"]] == [edge], "proxies %r" % h)

            p = berth(s, "tg", "rm", "web", code=1)
            check("service web" in p.stderr and "listener edge:80" in p.stderr, "tg rm in use: %r" % p.stderr)


def test_lb_aws_create_service_with_load_balancers():
    with Server(args=["--aws-account-id", "123456789012"]) as s:
        env = aws_env(s, access_key(s, role="deploy"))
        berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080")
        tg = expect_status(s.request("GET", "/v1/targetgroups/web"), 200).json()["targetGroup"]
        arn = tg["targetGroupArn"].replace(":local:000000000000:", ":eu-north-1:123456789012:")
        aws(s, env, "ecs", "register-task-definition", "--family", "web", "--container-definitions",
            json.dumps([{"name": "app", "image": "nginx", "memory": 64, "portMappings": [{"containerPort": 8080}]}]))
        rc, _, err = aws(s, env, "ecs", "create-service", "--service-name", "bad", "--task-definition", "web",
                         "--desired-count", "0", "--load-balancers",
                         "targetGroupArn=%s,containerName=app,containerPort=9999" % arn, ok=False)
        check(rc != 0 and "containerPort" in err, "bad port through ECS: %d %r" % (rc, err[-500:]))
        _, out, _ = aws(s, env, "ecs", "create-service", "--service-name", "web", "--task-definition", "web",
                        "--desired-count", "0", "--health-check-grace-period-seconds", "30", "--load-balancers",
                        "targetGroupArn=%s,containerName=app,containerPort=8080" % arn)
        lbs = out["service"]["loadBalancers"]
        check(len(lbs) == 1 and lbs[0]["targetGroupArn"] == arn and lbs[0]["containerName"] == "app" and
              lbs[0]["containerPort"] == 8080, "create-service loadBalancers %r" % lbs)
        check(out["service"]["healthCheckGracePeriodSeconds"] == 30, "grace %r" % out["service"])
        _, d, _ = aws(s, env, "ecs", "describe-services", "--services", "web")
        check(d["services"][0]["loadBalancers"][0]["targetGroupArn"] == arn, "describe-services %r" % d)
        _, out, _ = aws(s, env, "ecs", "update-service", "--service", "web", "--health-check-grace-period-seconds", "90")
        check(out["service"]["healthCheckGracePeriodSeconds"] == 90, "update-service grace %r" % out["service"])
        rc, _, err = aws(s, env, "ecs", "update-service", "--service", "web", "--load-balancers",
                         "targetGroupArn=%s,containerName=app,containerPort=8080" % arn, ok=False)
        check(rc != 0 and "load balancers are set when it is created" in err, "update lbs: %d %r" % (rc, err[-500:]))
        expect_error(s.request("DELETE", "/v1/targetgroups/web"), 409, "ResourceInUse")


def test_lb_publish_makes_the_group_balancer_and_listener_and_undoes_them_when_the_service_fails():
    with Server(args=["--heartbeat-interval", "500ms"]) as s:
        token = agent_token(s)
        with Agent(s, 2, token, id_prefix="pub", args=["--zones", "2"]):
            wait_until(lambda: len(expect_status(s.request("GET", "/v1/nodes"), 200).json()["containerInstances"])
                       == 2, wait=LONG, step=0.2, what="two simulated nodes")
            register_web(s)
            # Errors before anything is made: a port no container maps, a bad spec.
            p = berth(s, "service", "create", "web", "--taskdef", "web", "--publish", "80:9090", code=1)
            check("maps no TCP container port 9090" in p.stderr, "unmapped port: %r" % p.stderr)
            p = berth(s, "service", "create", "web", "--taskdef", "web", "--publish", "80:8080/udp", code=1)
            check("maps no UDP container port 8080" in p.stderr, "no UDP mapping: %r" % p.stderr)
            p = berth(s, "service", "create", "web", "--taskdef", "web", "--publish", "80:8080/sctp", code=2)
            check("http, tcp or udp" in p.stderr, "bad protocol: %r" % p.stderr)
            p = berth(s, "service", "create", "web", "--taskdef", "web", "--health-path", "/ready", code=2)
            check("--health-path goes with --publish" in p.stderr, "health flags alone: %r" % p.stderr)
            p = berth(s, "service", "create", "web", "--taskdef", "web", "--publish", "80:8080", "--no-health-check",
                      "--health-path", "/ready", code=2)
            check("no health check takes --health-path" in p.stderr, "contradicting health flags: %r" % p.stderr)
            check(json.loads(berth(s, "tg", "ls", "--json").stdout)["targetGroups"] == [], "made after an error")

            berth(s, "service", "create", "web", "--taskdef", "web", "--count", "2", "--publish", "80:8080/http",
                  "--on", "attribute:zone == zone-a", "--health-path", "/ready", "--health-codes", "200,204")
            tg = expect_status(s.request("GET", "/v1/targetgroups/web-8080"), 200).json()["targetGroup"]
            check(tg["protocol"] == "HTTP" and tg["port"] == 8080 and tg["healthCheckPath"] == "/ready" and
                  tg["matcher"]["httpCode"] == "200,204", "target group %r" % tg)
            lb = expect_status(s.request("GET", "/v1/loadbalancers/web"), 200).json()["loadBalancer"]
            check(lb["nodes"] == "attribute:zone == zone-a" and
                  [(l["port"], l["protocol"], l["defaultTargetGroup"]) for l in lb["listeners"]] ==
                  [(80, "HTTP", "web-8080")], "load balancer %r" % lb)
            svc = expect_status(s.request("GET", "/v1/services/web"), 200).json()["service"]
            check([(l["targetGroupName"], l["containerName"], l["containerPort"]) for l in svc["loadBalancers"]] ==
                  [("web-8080", "app", 8080)], "service loadBalancers %r" % svc["loadBalancers"])
            wait_until(lambda: [t["state"] for t in json.loads(berth(s, "tg", "health", "web-8080", "--json")
                                                              .stdout)["health"]["targets"]] == ["healthy"] * 2,
                       wait=LONG, step=0.3, what="two healthy targets")

            def names():
                tgs = json.loads(berth(s, "tg", "ls", "--json").stdout)["targetGroups"]
                lbs = json.loads(berth(s, "lb", "ls", "--json").stdout)["loadBalancers"]
                return sorted(t["targetGroupName"] for t in tgs), sorted(b["loadBalancerName"] for b in lbs)

            # Another service on a port already given in the cluster: its group
            # and balancer are made, the listener is refused, both are removed.
            register_web(s, "api")
            p = berth(s, "service", "create", "api", "--taskdef", "api", "--publish", "80:8080", code=1)
            check("port 80 is already a listener" in p.stderr, "port taken: %r" % p.stderr)
            check(names() == (["web-8080"], ["web"]), "left after a refused listener: %r" % (names(),))
            # Everything made, then the service refused (a placement expression
            # the server cannot parse): what --publish made is removed.
            p = berth(s, "service", "create", "api", "--taskdef", "api", "--publish", "81:8080",
                      "--constraint", "memberOf:attribute:zone ==", code=1)
            check("removing what --publish made" in p.stderr, "undo: %r" % p.stderr)
            check(names() == (["web-8080"], ["web"]), "left after a refused service: %r" % (names(),))
            # The same service again: the group, balancer and listener it finds
            # are reused, and kept when the service is refused (it exists).
            p = berth(s, "service", "create", "web", "--taskdef", "web", "--publish", "80:8080", code=1)
            check("already exists" in p.stderr, "service exists: %r" % p.stderr)
            lb = expect_status(s.request("GET", "/v1/loadbalancers/web"), 200).json()["loadBalancer"]
            check(names() == (["web-8080"], ["web"]) and len(lb["listeners"]) == 1, "after: %r %r" % (names(), lb))

            # DNS: the same container port over TCP and UDP, each its own group.
            body = {"family": "dns", "containerDefinitions": [{
                "name": "ns", "image": "nginx:latest", "memory": 32,
                "portMappings": [{"containerPort": 53}, {"containerPort": 53, "protocol": "udp"}]}]}
            expect_status(s.request("POST", "/v1/taskdefinitions", body), 201, "register dns")
            berth(s, "service", "create", "dns", "--taskdef", "dns", "--count", "1", "--publish", "5353:53/udp",
                  "--publish", "5354:53/tcp", "--no-health-check")
            check(expect_status(s.request("GET", "/v1/targetgroups/dns-53"), 200).json()["targetGroup"][
                "healthCheckEnabled"] is False, "--no-health-check on the TCP group it made")
            tgs = {t["targetGroupName"]: t["protocol"]
                   for t in json.loads(berth(s, "tg", "ls", "--json").stdout)["targetGroups"]}
            check(tgs.get("dns-53-udp") == "UDP" and tgs.get("dns-53") == "TCP", "dns groups %r" % tgs)
            lb = expect_status(s.request("GET", "/v1/loadbalancers/dns"), 200).json()["loadBalancer"]
            check(sorted((l["port"], l["protocol"], l["defaultTargetGroup"]) for l in lb["listeners"]) ==
                  [(5353, "UDP", "dns-53-udp"), (5354, "TCP", "dns-53")], "dns listeners %r" % lb["listeners"])
            svc = expect_status(s.request("GET", "/v1/services/dns"), 200).json()["service"]
            check(sorted((l["targetGroupName"], l["containerName"], l["containerPort"]) for l in svc["loadBalancers"])
                  == [("dns-53", "ns", 53), ("dns-53-udp", "ns", 53)], "dns loadBalancers %r" % svc["loadBalancers"])
            # Each group's target is the task's host port of its protocol (the
            # simulated node binds both, to different ports).
            def targets(group):
                return json.loads(berth(s, "tg", "health", group, "--json").stdout)["health"]["targets"]
            wait_until(lambda: [t["state"] for t in targets("dns-53-udp")] == ["healthy"], wait=LONG, step=0.3,
                       what="the UDP target in rotation")
            task = expect_status(s.request("GET", "/v1/tasks?service=dns"), 200).json()["tasks"][0]
            bound = {b["protocol"]: b["hostPort"] for c in task["containers"] for b in c.get("networkBindings", [])}
            check(targets("dns-53-udp")[0]["port"] == bound["udp"] and targets("dns-53")[0]["port"] == bound["tcp"]
                  and bound["udp"] != bound["tcp"], "target ports %r for bindings %r" % (
                      (targets("dns-53-udp"), targets("dns-53")), bound))


def test_lb_a_stopped_target_stays_on_its_agent_until_the_proxy_reports_it_drained():
    """The agent protocol by hand: one node, member of the load balancer and
    running the service's task. The task's stop puts it `draining` in the
    node's next proxy document but does not tell the agent to stop it; a report
    of that version with the target still in flight changes nothing; the report
    that lists it drained releases it."""
    from test_control_plane import DesiredStream
    with Server(args=["--heartbeat-interval", "2s"]) as s:
        token = agent_token(s)
        node = "edge-by-hand"
        expect_status(s.request("POST", "/v1/agent/register", {"nodeId": node, "cpu": 4096, "memory": 8192},
                                token=token), 200, "register")
        report = lambda body: s.request("POST", "/v1/agent/nodes/%s/report" % node, body, token=token)  # noqa: E731
        beating = threading.Event()

        def heartbeat():  # the node must report to keep its stream
            while not beating.wait(0.5):
                report({"tasks": []})

        threading.Thread(target=heartbeat, daemon=True).start()
        try:
            st = DesiredStream(s, node, token, changes=True)
            st.line()
            berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080")
            berth(s, "lb", "create", "edge")
            berth(s, "lb", "listener", "add", "edge", "--port", "80", "--protocol", "HTTP", "--default-tg", "web")
            register_web(s)
            # (within the grace period a failing target is not replaced: it stays, out of rotation)
            berth(s, "service", "create", "web", "--taskdef", "web", "--count", "1", "--lb", "web:app:8080",
                  "--health-grace", "3600")
            m = st.line()
            while not m["tasks"]:
                m = st.line()
            task = m["tasks"][0]["taskId"]
            expect_status(report({"tasks": [{"taskId": task, "lastStatus": "RUNNING", "containers": [
                {"name": "app", "lastStatus": "RUNNING", "networkBindings": [
                    {"containerPort": 8080, "hostPort": 32800, "protocol": "tcp"}]}]}]}), 200)

            # The node is given its target's health check, and the target takes
            # no traffic until the node reports it passing.
            m = st.line()
            while not any(c["taskId"] == task for c in m.get("checks", {}).get("targets", [])):
                m = st.line()
            c = [c for c in m["checks"]["targets"] if c["taskId"] == task][0]
            check(c["targetGroup"] == "web" and c["port"] == 32800 and c["protocol"] == "HTTP" and c["path"] == "/"
                  and c["matcher"] == "200-399" and c["intervalSeconds"] == 10, "the check: %r" % c)
            # The grace period changes by an update; the load balancers cannot.
            berth(s, "service", "update", "web", "--health-grace", "1800")
            svc = expect_status(s.request("GET", "/v1/services/web"), 200).json()["service"]
            check(svc["healthCheckGracePeriodSeconds"] == 1800, "grace after update: %r" % svc)
            msg = expect_error(s.request("PATCH", "/v1/services/web", {"loadBalancers": []}), 400, "InvalidParameter")
            check(msg.startswith("loadBalancers: a service's load balancers are set when it is created"), msg)
            # A changed check reaches the node on its stream.
            checks_version = m["checks"]["version"]
            berth(s, "tg", "modify", "web", "--health-path", "/ready", "--health-codes", "200", "--health-interval", "6")
            while m.get("checks", {}).get("version", 0) <= checks_version:
                m = st.line()
            c = [c for c in m["checks"]["targets"] if c["taskId"] == task][0]
            check(c["path"] == "/ready" and c["matcher"] == "200" and c["intervalSeconds"] == 6, "changed: %r" % c)
            t = json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]["targets"][0]
            check(t["state"] == "initial" and t["reason"] == "Elb.InitialHealthChecking", "not checked yet: %r" % t)
            for bad, field in (({"targetHealth": "x"}, "targetHealth:"),
                               ({"targetHealth": [{"taskId": task, "targetGroup": "web", "state": "sick"}]},
                                "targetHealth[0].state:"),
                               ({"targetHealth": [{"taskId": task, "targetGroup": "no good!", "state": "healthy"}]},
                                "targetHealth[0].targetGroup:")):
                e = expect_error(report(dict(bad, tasks=[])), 400, "InvalidParameter")
                check(e.startswith(field), "error %r" % e)
            expect_status(report({"tasks": [], "targetHealth": [
                {"taskId": task, "targetGroup": "web", "state": "unhealthy", "reason": "Target.ResponseCodeMismatch",
                 "description": "Health checks failed with these codes: [503]"}]}), 200)
            t = wait_until(lambda: (lambda t: t["state"] == "unhealthy" and t)(
                json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]["targets"][0]),
                wait=LONG, step=0.1, what="the target unhealthy")
            check(t["reason"] == "Target.ResponseCodeMismatch" and "[503]" in t["description"], "unhealthy: %r" % t)
            table = berth(s, "tg", "health", "web").stdout
            check("Target.ResponseCodeMismatch (Health checks failed with these codes: [503])" in table, table)
            expect_status(report({"tasks": [], "targetHealth": [
                {"taskId": task, "targetGroup": "web", "state": "healthy"}]}), 200)

            def proxy_line(state):
                m = st.line()
                while not any(t["id"] == task and t["state"] == state
                              for g in m.get("proxy", {}).get("targetGroups", []) for t in g["targets"]):
                    check(all(t["taskId"] != task or t["desiredStatus"] == "RUNNING" for t in m["tasks"]),
                          "told to stop before it drained: %r" % m)
                    m = st.line()
                return m
            version = proxy_line("healthy")["proxy"]["version"]
            expect_status(report({"tasks": [], "proxyVersion": version, "proxyDrained": []}), 200)

            # Bad drained lists are refused whole, naming the field.
            for bad, field in (({"proxyVersion": version, "proxyDrained": "x"}, "proxyDrained:"),
                               ({"proxyVersion": version, "proxyDrained": [""]}, "proxyDrained[0]:")):
                e = expect_error(report(dict(bad, tasks=[])), 400, "InvalidParameter")
                check(e.startswith(field), "error %r" % e)

            expect_status(s.request("POST", "/v1/tasks/%s/stop" % task, {"reason": "test"}), 200, "stop")
            m = proxy_line("draining")
            check(task not in [t["taskId"] for t in m["tasks"]], "the stop went out with the draining document: %r" % m)
            draining = m["proxy"]["version"]
            held = json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]["targets"][0]
            check(held["drain"]["unacknowledgedBy"] == [node], "held target: %r" % held)

            # Applied, with a request still in flight: still held.
            expect_status(report({"tasks": [], "proxyVersion": draining, "proxyDrained": []}), 200)
            held = wait_until(lambda: (lambda t: t["drain"]["inFlightOn"] == [node] and t)(
                json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]["targets"][0]),
                wait=LONG, step=0.1, what="the target waiting on its requests in flight")
            check(held["drain"]["unacknowledgedBy"] == [], "held target: %r" % held)
            # Drained: the agent is told to stop it.
            expect_status(report({"tasks": [], "proxyVersion": draining, "proxyDrained": [task]}), 200)
            m = st.line()
            while task not in [t["taskId"] for t in m["tasks"]]:  # (the service's replacement comes too)
                m = st.line()
            check([t["desiredStatus"] for t in m["tasks"] if t["taskId"] == task] == ["STOPPED"],
                  "the line after the drain: %r" % m)
            st.close()
        finally:
            beating.set()
