"""The permission matrix (docs/permissions.md) is the router's own table
(GET /v1/permissions), so the document cannot drift from what is enforced; and
every route is called with every role, each refused exactly where the matrix
says (403 from the gate, 401 without a credential).

To write docs/permissions.md again after changing a route:
    BERTH_WRITE_PERMISSIONS=1 python3 tests/integration/run.py --binary build/berth -k test_permissions
"""

import os
import re

from harness import Server, check, expect_status, timeout

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "permissions.md")
ROLES = ("admin", "deploy", "read-only", "agent", "server")
SCOPE = {
    "none": "as any token of the role",
    "cluster": "its clusters only (lists show only those)",
    "repository": "its repositories only (lists show only those)",
    "unscoped": "refused: shared by every cluster",
}
WHO = {
    "open": "anyone, no credential",
    "read": "read-only, deploy and admin tokens",
    "deploy": "deploy and admin tokens",
    "admin": "admin tokens",
    "agent": "agent tokens and node certificates",
    "server": "server and admin tokens (a server joining the cluster)",
    "peer": "the cluster's servers, by their peer certificates (no token)",
    "registry": "the registry, by role and by each registry token's scope; anonymous pulls where a repository "
                "allows them (docs/registry.md)",
    "aws": "the AWS front end: access keys (SigV4), not tokens; each operation as the native route it calls "
           "allows the key's role (docs/aws.md)",
}


def render(routes):
    lines = [
        "# Permissions: who may call each route",
        "",
        "Generated from the router's table (`GET /v1/permissions`) by",
        "`tests/integration/test_permissions.py`, which fails when this file and the",
        "server disagree, and calls every route with every role. Do not edit by hand:",
        "`BERTH_WRITE_PERMISSIONS=1 python3 tests/integration/run.py --binary build/berth -k test_permissions`.",
        "",
        "A route refuses a token of another role with 403 (`Forbidden`, naming the",
        "role and who may), and a request without a credential with 401. The",
        "registry's `/v2/` routes apply their own rules (docs/registry.md).",
        "",
        "A token may be limited to some clusters and repositories (`berth token create",
        "--cluster prod --repo 'team/*'`; docs/security.md, \"Scoped tokens\"); the last",
        "column says what such a token may do on each route.",
        "",
        "| route | admin | deploy | read-only | agent | server | who may | limited tokens |",
        "| --- | :-: | :-: | :-: | :-: | :-: | --- | --- |",
    ]
    for r in sorted(routes, key=lambda r: (r["path"], r["method"])):
        marks = ["yes" if role in r["roles"] else "-" for role in ROLES]
        if r["access"] == "open":
            marks = ["yes"] * 5
        elif r["access"] == "registry":
            # The registry's roles (registry/auth.cc, Auth::RoleAllows): admin and
            # deploy push and pull, read-only and agent (node) credentials pull.
            marks = ["push, pull", "push, pull", "pull", "pull", "-"]
        elif r["access"] == "aws":
            marks = ["key", "key", "key (reads)", "-", "-"]
        lines.append("| `%s %s` | %s | %s | %s |" % (r["method"], r["path"], " | ".join(marks), WHO[r["access"]],
                                                   SCOPE[r["scope"]]))
    return "\n".join(lines) + "\n"


def concrete(path):
    path = re.sub(r"\{[a-z]+\.\.\.\}", "nothing/here", path)
    return re.sub(r"\{[a-z]+\}", "nonexistent-x", path)


@timeout(180)
def test_the_permission_matrix_is_the_router_table_and_every_route_refuses_every_other_role():
    with Server(args=["--no-agent"]) as s:
        routes = expect_status(s.request("GET", "/v1/permissions"), 200).json()["routes"]
        check(len(routes) > 50, "only %d routes" % len(routes))
        text = render(routes)
        if os.environ.get("BERTH_WRITE_PERMISSIONS"):
            with open(DOC, "w") as f:
                f.write(text)
        with open(DOC) as f:
            doc = f.read()
        check(doc == text, "docs/permissions.md differs from the server's table; write it again with "
                           "BERTH_WRITE_PERMISSIONS=1 (see this test's docstring)")

        tokens = {"admin": s.token}
        for role in ("deploy", "read-only", "agent", "server"):
            tokens[role] = expect_status(s.request("POST", "/v1/tokens", {"role": role}), 201).json()["token"]["secret"]
        calls = 0
        for r in routes:
            path = concrete(r["path"])
            body = None if r["method"] in ("GET", "HEAD", "DELETE") else {}
            if r["access"] in ("open", "registry", "aws"):
                continue
            # No credential: 401 everywhere but the open routes.
            resp = s.request(r["method"], path, body, token=None, wait=15)
            check(resp.status == 401, "%s %s without a token: %d %r" % (r["method"], path, resp.status, resp.body[:200]))
            for role in ROLES:
                resp = s.request(r["method"], path, body, token=tokens[role], wait=15)
                calls += 1
                if r["access"] == "peer":
                    # A certificate-only route: no token of any role is a credential there.
                    check(resp.status == 401 and b"peer certificate" in resp.body,
                          "%s %s as %s: %d %r" % (r["method"], path, role, resp.status, resp.body[:200]))
                    continue
                gate = resp.status == 403 and b"a token with role " + role.encode() + b" may not" in resp.body
                if role in r["roles"]:
                    check(resp.status != 401 and not gate,
                          "%s %s as %s: refused (%d %r)" % (r["method"], path, role, resp.status, resp.body[:200]))
                else:
                    check(gate, "%s %s as %s: expected 403 from the gate, got %d %r"
                          % (r["method"], path, role, resp.status, resp.body[:200]))
        check(calls >= 200, "only %d calls" % calls)
        # The open routes are open.
        for path in ("/healthz", "/v1/ca", "/install.sh", "/download/berth-linux-amd64.sha256", "/install/pin"):
            check(s.request("GET", path, token=None).status == 200, "GET %s without a token" % path)
        s.assert_serving("every route with every role")


def token(s, role, *limits):
    body = {"role": role}
    for key, value in limits:
        body.setdefault(key, []).append(value)
    return expect_status(s.request("POST", "/v1/tokens", body), 201, "token %r" % (body,)).json()["token"]["secret"]


@timeout(180)
def test_a_token_limited_to_clusters_and_repositories_is_refused_outside_them_on_every_route():
    from harness import Agent, cli, wait_until
    with Server(args=["--no-agent", "--heartbeat-interval", "500ms"]) as s:
        routes = expect_status(s.request("GET", "/v1/permissions"), 200).json()["routes"]
        for name in ("prod", "dev"):
            expect_status(s.create_cluster(name), 201)
        with Agent(s, 1, token(s, "agent"), args=["--cluster", "prod"]):
            wait_until(lambda: [n for n in s.request("GET", "/v1/nodes").json()["containerInstances"]
                                if n["agentConnected"]], wait=30, what="the prod node")
            node = s.request("GET", "/v1/nodes").json()["containerInstances"][0]["nodeId"]
            td = {"family": "web", "containerDefinitions": [{"name": "c", "image": "i", "memory": 8}]}
            expect_status(s.request("POST", "/v1/taskdefinitions", td), 201)
            task_id = expect_status(s.request("POST", "/v1/tasks", {"cluster": "prod", "taskDefinition": "web"}),
                                    200).json()["tasks"][0]["taskId"]
            expect_status(s.request("POST", "/v1/services", {"cluster": "prod", "serviceName": "svc",
                                                             "taskDefinition": "web", "desiredCount": 1}), 201)
            for repo in ("team/app", "other/app"):
                expect_status(s.request("POST", "/v1/repositories", {"repositoryName": repo}), 201)

            dev = token(s, "deploy", ("clusters", "dev"))
            prod = token(s, "deploy", ("clusters", "prod"))
            team = token(s, "deploy", ("repositories", "team/*"))
            team_pull = token(s, "deploy", ("repositories", "team/*:pull"))
            values = {"name": "prod", "id": node}

            def call(r, tok, repo=None):
                path = r["path"]
                if "/v1/tasks/{id}" in path:
                    path = path.replace("{id}", task_id)
                if path.startswith("/v1/repositories/"):
                    path = path.replace("{name}", repo.replace("/", "%2F")).replace("{ref}", "latest")
                if path.startswith("/v1/services/"):
                    path = path.replace("{name}", "svc") + "?cluster=prod"
                path = re.sub(r"\{([a-z]+)\}", lambda m: values.get(m.group(1), "x"), path)
                if r["method"] == "GET" and path in ("/v1/nodes", "/v1/tasks", "/v1/services", "/v1/stream", "/v1/overview",
                                                     "/v1/targetgroups", "/v1/loadbalancers"):
                    path += "?cluster=prod"
                elif path.startswith(("/v1/targetgroups/", "/v1/loadbalancers/")):
                    path += "?cluster=prod"
                prod_arn = "arn:aws:ecs:local:000000000000:cluster/prod"
                if r["method"] == "GET" and path == "/v1/tags":
                    path += "?resource=" + prod_arn
                body = None
                if r["method"] not in ("GET", "HEAD", "DELETE"):
                    body = {"cluster": "prod", "taskDefinition": "web", "serviceName": "svc2", "desiredCount": 0,
                            "repositoryName": repo or "team/new", "clusterName": "new",
                            "resource": prod_arn, "tags": [{"key": "a", "value": "b"}], "tagKeys": ["a"]}
                return s.request(r["method"], path, body, token=tok, wait=15)

            checked = {"cluster": 0, "repository": 0, "unscoped": 0}
            for r in routes:
                if "deploy" not in r["roles"] or r["scope"] == "none":
                    continue
                what = "%s %s" % (r["method"], r["path"])
                if r["scope"] == "cluster" and (r["method"], r["path"]) != ("GET", "/v1/clusters"):
                    resp = call(r, dev)
                    check(resp.status == 403 and b"is limited to clusters dev" in resp.body,
                          "%s with a dev token: %d %r" % (what, resp.status, resp.body[:200]))
                elif r["scope"] == "repository" and r["path"] != "/v1/repositories":
                    resp = call(r, team, "other/app")
                    check(resp.status == 403 and b"is limited to repositories team/*" in resp.body,
                          "%s on other/app with a team/* token: %d %r" % (what, resp.status, resp.body[:200]))
                    resp = call(r, team, "team/app")
                    check(b"is limited to" not in resp.body, "%s on team/app: %r" % (what, resp.body[:200]))
                elif r["scope"] == "unscoped":
                    resp = call(r, dev)
                    check(resp.status == 403 and b"needs a token without limits" in resp.body,
                          "%s with a dev token: %d %r" % (what, resp.status, resp.body[:200]))
                else:
                    continue
                checked[r["scope"]] += 1
            check(checked["cluster"] >= 12 and checked["repository"] >= 8 and checked["unscoped"] >= 5,
                  "routes checked: %r" % checked)
            # Inside their scope they act; lists show only what is theirs.
            for path in ("/v1/clusters", "/v1/tasks", "/v1/services", "/v1/nodes"):
                got = s.request("GET", path, token=dev).json()
                check("prod" not in str(got) and node not in str(got), "%s with a dev token: %r" % (path, got))
            r = s.request("GET", "/v1/tasks/" + task_id, token=prod)
            check(r.status == 200, "a prod token reads its task: %d" % r.status)
            r = s.request("POST", "/v1/tasks", {"cluster": "prod", "taskDefinition": "web"}, token=prod)
            check(r.status == 200, "a prod token runs a task in prod: %d %r" % (r.status, r.body[:200]))
            s.request("POST", "/v1/repositories", {"repositoryName": "team/app"})  # the loop above may have deleted it
            names = [x["repositoryName"] for x in s.request("GET", "/v1/repositories", token=team).json()["repositories"]]
            check(names == ["team/app"], "repositories a team/* token sees: %r" % names)
            r = s.request("DELETE", "/v1/repositories/team%2Fapp", token=team_pull)
            check(r.status == 403 and b"may not change repository team/app" in r.body, "a pull-only delete: %r" % r.body)
            check(s.request("GET", "/v1/repositories/team%2Fapp", token=team_pull).status == 200, "a pull-only read")

            # The registry applies the same limits, to berth tokens and to the registry tokens they get.
            import base64
            basic = {"Authorization": "Basic " + base64.b64encode(("u:" + team).encode()).decode()}
            r = s.request("GET", "/v2/other/app/tags/list", headers=basic, token=None)
            check(r.status == 401 and b"insufficient_scope" in str(r.headers).encode(), "other/app on /v2: %d" % r.status)
            r = s.request("GET", "/v2/team/app/tags/list", headers=basic, token=None)
            check(r.status in (200, 404), "team/app on /v2: %d %r" % (r.status, r.body[:200]))
            got = s.request("GET", "/v2/token?service=berth&scope=repository:other/app:pull,push"
                            "&scope=repository:team/app:pull,push", headers=basic, token=None).json()
            bearer = {"Authorization": "Bearer " + got["token"]}
            check(s.request("GET", "/v2/other/app/tags/list", headers=bearer, token=None).status == 401,
                  "a registry token got other/app")
            check(s.request("GET", "/v2/_catalog", headers=basic, token=None).json()["repositories"] == ["team/app"],
                  "the catalog of a team/* token")
            # Pages are full of what the token sees: repositories it may not see fill none.
            for name in ("aaa/one", "aaa/two"):
                s.request("POST", "/v1/repositories", {"repositoryName": name})
            r = s.request("GET", "/v2/_catalog?n=1", headers=basic, token=None)
            check(r.json()["repositories"] == ["team/app"] and "rel=\"next\"" not in str(r.headers),
                  "a team/* token's first catalog page of one: %r %r" % (r.body, r.headers))

            # Limits are checked when the token is made, and shown.
            for body, fragment in (({"role": "admin", "clusters": ["dev"]}, b"an admin token cannot be limited"),
                                   ({"role": "agent", "repositories": ["a"]}, b"limited by clusters only"),
                                   ({"role": "deploy", "clusters": ["nope"]}, b"cluster nope does not exist"),
                                   ({"role": "deploy", "repositories": ["Bad Name"]}, b"repositories[0]: must be")):
                r = s.request("POST", "/v1/tokens", body)
                check(r.status in (400, 404) and fragment in r.body, "%r: %d %r" % (body, r.status, r.body[:200]))
            env = {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token, "BERTH_CA_FILE": s.ca_file}
            out = cli(["token", "create", "--role", "read-only", "--cluster", "dev", "--repo", "team/*:pull"], env=env)
            check(out.returncode == 0 and out.stdout.strip(), "token create with limits: %r" % out.stderr)
            table = cli(["token", "ls"], env=env).stdout
            check("cluster dev repo team/*:pull" in table, table)
        # An agent token limited to dev cannot join a node to prod.
        agent_dev = token(s, "agent", ("clusters", "dev"))
        with Agent(s, 1, agent_dev, id_prefix="devonly", args=["--cluster", "prod"]) as a:
            wait_until(lambda: "is limited to clusters dev" in a.logs(), wait=30, what="the join refused")
