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
ROLES = ("admin", "deploy", "read-only", "agent")
WHO = {
    "open": "anyone, no credential",
    "read": "read-only, deploy and admin tokens",
    "deploy": "deploy and admin tokens",
    "admin": "admin tokens",
    "agent": "agent tokens and node certificates",
    "registry": "the registry, by role and by each registry token's scope; anonymous pulls where a repository "
                "allows them (docs/registry.md)",
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
        "| route | admin | deploy | read-only | agent | who may |",
        "| --- | :-: | :-: | :-: | :-: | --- |",
    ]
    for r in sorted(routes, key=lambda r: (r["path"], r["method"])):
        marks = ["yes" if role in r["roles"] else "-" for role in ROLES]
        if r["access"] == "open":
            marks = ["yes"] * 4
        elif r["access"] == "registry":
            # The registry's roles (registry/auth.cc, Auth::RoleAllows): admin and
            # deploy push and pull, read-only and agent (node) credentials pull.
            marks = ["push, pull", "push, pull", "pull", "pull"]
        lines.append("| `%s %s` | %s | %s |" % (r["method"], r["path"], " | ".join(marks), WHO[r["access"]]))
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
        for role in ("deploy", "read-only", "agent"):
            tokens[role] = expect_status(s.request("POST", "/v1/tokens", {"role": role}), 201).json()["token"]["secret"]
        calls = 0
        for r in routes:
            path = concrete(r["path"])
            body = None if r["method"] in ("GET", "HEAD", "DELETE") else {}
            if r["access"] in ("open", "registry"):
                continue
            # No credential: 401 everywhere but the open routes.
            resp = s.request(r["method"], path, body, token=None, wait=15)
            check(resp.status == 401, "%s %s without a token: %d %r" % (r["method"], path, resp.status, resp.body[:200]))
            for role in ROLES:
                resp = s.request(r["method"], path, body, token=tokens[role], wait=15)
                calls += 1
                gate = resp.status == 403 and b"a token with role " + role.encode() + b" may not" in resp.body
                if role in r["roles"]:
                    check(resp.status != 401 and not gate,
                          "%s %s as %s: refused (%d %r)" % (r["method"], path, role, resp.status, resp.body[:200]))
                else:
                    check(gate, "%s %s as %s: expected 403 from the gate, got %d %r"
                          % (r["method"], path, role, resp.status, resp.body[:200]))
        check(calls >= 200, "only %d calls" % calls)
        # The open routes are open.
        for path in ("/healthz", "/v1/ca"):
            check(s.request("GET", path, token=None).status == 200, "GET %s without a token" % path)
        s.assert_serving("every route with every role")
