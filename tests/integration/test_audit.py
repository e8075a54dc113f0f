"""The audit log (docs/security.md, "Audit log"): every change and every refused
credential, with who (token id and role, or node), from which address and how it
ended, durable with the change it records, kept within a retention, read with
`berth audit ls` and GET /v1/audit (admin only).
"""

import json

from harness import Agent, Server, check, cli, expect_exit, expect_status, timeout, wait_until


def env_for(s, token=None):
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": token or s.token, "BERTH_CA_FILE": s.ca_file}


def events(s, *flags):
    out = expect_exit(cli(["audit", "ls", "--json"] + list(flags), env=env_for(s)), 0, "audit ls").stdout
    return json.loads(out)["events"]


@timeout(120)
def test_the_audit_log_records_changes_and_refusals_and_keeps_them_across_kill_9():
    with Server(args=["--heartbeat-interval", "500ms"]) as s:
        deploy = expect_status(s.request("POST", "/v1/tokens", {"role": "deploy"}), 201).json()["token"]
        ro = expect_status(s.request("POST", "/v1/tokens", {"role": "read-only"}), 201).json()["token"]
        expect_status(s.create_cluster("audited"), 201, "create cluster")
        expect_status(s.request("POST", "/v1/clusters", {"clusterName": "by-deploy"}, token=deploy["secret"]), 201)
        expect_status(s.request("DELETE", "/v1/tokens/admin", token=deploy["secret"]), 403)
        expect_status(s.request("POST", "/v1/clusters", {"clusterName": "x"}, token=ro["secret"]), 403)
        expect_status(s.request("GET", "/v1/clusters", token="berth_not_a_token"), 401)
        expect_status(s.request("POST", "/v1/secrets", {"name": "pw", "value": "s3cr3t-in-audit?"}), 201)
        agent_token = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201).json()["token"]["secret"]
        with Agent(s, 1, agent_token):
            wait_until(lambda: any(n["agentConnected"] for n in
                                   s.request("GET", "/v1/nodes").json()["containerInstances"]),
                       wait=30, what="the agent connected")
            wait_until(lambda: (s.metric('berth_http_requests_total{route="/v1/agent/nodes/{id}/report",status="200"}')
                                or 0) >= 2, wait=30, what="a few reports")
        got = events(s)
        by = {(e["method"], e["path"], e["actor"]): e for e in got}
        e = by.get(("POST", "/v1/clusters", deploy["id"]))
        check(e and e["role"] == "deploy" and e["status"] == 201 and e["address"] == "127.0.0.1", "deploy's change: %r" % e)
        e = by.get(("DELETE", "/v1/tokens/admin", deploy["id"]))
        check(e and e["status"] == 403 and e["errorCode"] == "Forbidden" and "only an admin" in e["errorMessage"],
              "deploy's refusal: %r" % e)
        e = by.get(("POST", "/v1/clusters", ro["id"]))
        check(e and e["status"] == 403 and e["role"] == "read-only", "read-only's refusal: %r" % e)
        e = by.get(("GET", "/v1/clusters", "-"))
        check(e and e["status"] == 401 and e["errorMessage"] == "the token is not valid", "a bad token: %r" % e)
        check(("POST", "/v1/secrets", "admin") in by, "the secret's creation")
        check(any(e["path"] == "/v1/agent/register" and e["actor"].startswith("agent-") for e in got),
              "the agent's join: %r" % [e["path"] for e in got])
        check(not any("/report" in e["path"] for e in got), "agents' reports are routine, not audited")
        check(not any(e["method"] == "GET" and e["status"] < 400 for e in got), "reads were audited")
        check(b"s3cr3t-in-audit?" not in expect_status(s.request("GET", "/v1/audit?limit=1000"), 200).body,
              "a secret's value in the audit log")

        # Filters, the table, and who may read it.
        mine = events(s, "--token", deploy["id"])
        check(mine and all(e["actor"] == deploy["id"] for e in mine), "--token: %r" % mine)
        check(events(s, "--since", "2099-01-01T00:00:00Z") == [], "--since the future")
        check(len(events(s, "--since", "1h")) == len(got), "--since 1h")
        check(len(events(s, "--limit", "2")) == 2, "--limit 2")
        table = expect_exit(cli(["audit", "ls"], env=env_for(s)), 0, "audit ls").stdout
        check("DELETE /v1/tokens/admin" in table and "403 Forbidden: a token with role deploy may not" in table, table)
        r = cli(["audit", "ls"], env=env_for(s, deploy["secret"]))
        check(r.returncode == 1 and "may not GET /v1/audit: only an admin token may" in r.stderr, r.stderr)
        r = cli(["audit", "ls", "--since", "yesterday"], env=env_for(s))
        check(r.returncode == 1 and "since: expected a time" in r.stderr, r.stderr)

        # An acknowledged change is in the log even if the server dies right after.
        expect_status(s.request("DELETE", "/v1/clusters/audited"), 200, "delete cluster")
        s.kill()
        s.start()
        e = [e for e in events(s) if e["path"] == "/v1/clusters/audited"]
        check(e and e[0]["status"] == 200 and e[0]["method"] == "DELETE", "the change before kill -9: %r" % e)


@timeout(60)
def test_the_audit_log_keeps_the_newest_entries_within_its_bound():
    with Server(args=["--audit-max-entries", "3"]) as s:
        for i in range(6):
            expect_status(s.create_cluster("c%d" % i), 201)
        s.stop()
        s.start()  # the retention runs in its first second
        wait_until(lambda: len(events(s)) <= 3, wait=20, what="the audit log trimmed to 3")
        kept = events(s)
        check([e["method"] for e in kept] == ["POST"] * 3, "the newest kept: %r" % kept)
