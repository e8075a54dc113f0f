"""Access keys (docs/security.md, "Access keys"): credentials for AWS tools, with a
role, a scope, an expiry, revocable and audited like tokens, whose secret the
server keeps sealed with the key that seals secrets (it needs it back to verify
signatures). Neither the id nor the secret is a bearer token; an ECR login
password made from the pair (registry/auth.h, `EcrPassword`) logs Docker in to
the registry, on any server, across restarts.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import sqlite3
import time

from harness import Server, check, cli, expect_exit, expect_status, timeout

NOT_BEARER = "is an access key: it signs requests (AWS Signature Version 4) and is not a bearer token"


def env_for(s, token=None):
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": token or s.token, "BERTH_CA_FILE": s.ca_file}


def create(s, *flags):
    out = expect_exit(cli(["accesskey", "create", "--json"] + list(flags), env=env_for(s)), 0,
                      "accesskey create " + " ".join(flags)).stdout
    return json.loads(out)


def ecr_password(key_id, secret, expires_ms):
    """What `aws ecr get-login-password` will print: the formula of registry/auth.h."""
    payload = "berthecr1.%s.%d" % (key_id, expires_ms)
    return payload + "." + hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def v2(s, password, method="GET", path="/v2/", user="AWS"):
    """A registry request with HTTP Basic, as `docker login --username AWS` sends it."""
    auth = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    return s.request(method, path, headers={"Authorization": auth}, token=None)


def in_12h():
    return int(time.time() * 1000) + 12 * 3600 * 1000


def refused_as_bearer(s, credential, key_id, what):
    r = s.request("GET", "/v1/clusters", token=credential)
    expect_status(r, 401, what)
    message = r.json()["error"]["message"]
    check(NOT_BEARER in message and key_id in message, "%s: %r" % (what, message))


@timeout(120)
def test_access_keys_are_made_listed_and_revoked_and_never_bearer_tokens():
    with Server() as s:
        key = create(s)
        key_id, secret = key["accessKeyId"], key["secretAccessKey"]
        check(re.fullmatch(r"BKIA[A-Z2-7]{16}", key_id), "the id's shape: %r" % key_id)
        check(re.fullmatch(r"[A-Za-z0-9]{40}", secret), "the secret's shape: %r" % secret)
        check(key["role"] == "deploy", "deploy by default: %r" % key)
        check("expiresAt" not in key and "createdAt" in key, "no expiry unless asked: %r" % key)

        # Listed without the secret, sealed or not; not among the tokens.
        listed = expect_exit(cli(["accesskey", "ls", "--json"], env=env_for(s)), 0, "accesskey ls").stdout
        keys = json.loads(listed)["accessKeys"]
        check([k["accessKeyId"] for k in keys] == [key_id], "ls: %r" % keys)
        check(secret not in listed and "secretAccessKey" not in listed and "sealed" not in listed.lower(),
              "ls shows no secret: %r" % listed)
        table = expect_exit(cli(["accesskey", "ls"], env=env_for(s)), 0, "accesskey ls (table)").stdout
        check(key_id in table and secret not in table, table)
        tokens = expect_status(s.request("GET", "/v1/tokens"), 200, "tokens").json()["tokens"]
        check(all(t["id"] != key_id for t in tokens), "an access key among the tokens: %r" % tokens)

        # The secret is kept sealed: state.db holds neither it nor anything that opens without the key file.
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(s.data_dir, "state.db"), uri=True)
        try:
            row = db.execute("SELECT sealed_secret, secret_key_id, hash FROM tokens WHERE id = ?", (key_id,)).fetchone()
        finally:
            db.close()
        check(row and row[0] and row[1], "the sealed secret and its key id are stored: %r" % (row,))
        check(secret not in row[0] and secret.encode() not in base64.b64decode(row[0]), "stored in clear: %r" % (row,))
        check(row[2] == hashlib.sha256(secret.encode()).hexdigest(), "the hash is SHA-256 of the secret")

        # Neither the secret nor the id is a bearer token, on the API or the registry.
        refused_as_bearer(s, secret, key_id, "the secret as a bearer token")
        refused_as_bearer(s, key_id, key_id, "the id as a bearer token")
        for credential in (secret, key_id):
            r = v2(s, credential)
            check(r.status == 401 and NOT_BEARER.encode() in r.body, "/v2/ with %r over Basic: %r" % (credential, r))

        # Without --json: the pair and how to use it.
        out = expect_exit(cli(["accesskey", "create", "--role", "read-only"], env=env_for(s)), 0,
                          "accesskey create (text)").stdout
        check("AccessKeyId:" in out and "SecretAccessKey:" in out and "shown this once" in out and
              "AWS_SECRET_ACCESS_KEY" in out and "aws configure" in out, out)

        # Only admin, deploy and read-only; only an admin token makes them.
        bad = cli(["accesskey", "create", "--role", "agent"], env=env_for(s))
        check(bad.returncode == 1 and "admin, deploy or read-only" in bad.stderr, bad.stderr)
        deployer = expect_status(s.request("POST", "/v1/tokens", {"role": "deploy"}), 201, "a deploy token")
        r = s.request("POST", "/v1/accesskeys", {"role": "deploy"}, token=deployer.json()["token"]["secret"])
        expect_status(r, 403, "a deploy token making an access key")

        # A key is not removed as a token, and rm revokes it at once.
        r = s.request("DELETE", "/v1/tokens/" + key_id)
        check(r.status == 404 and "/v1/accesskeys/" in r.json()["error"]["message"], "token rm of a key: %r" % r)
        check(v2(s, ecr_password(key_id, secret, in_12h())).status == 200, "the ECR password before rm")
        expect_exit(cli(["accesskey", "rm", key_id], env=env_for(s)), 0, "accesskey rm")
        r = v2(s, ecr_password(key_id, secret, in_12h()))
        check(r.status == 401, "the ECR password of a removed key: %r" % r)
        listed = json.loads(cli(["accesskey", "ls", "--json"], env=env_for(s)).stdout)["accessKeys"]
        check(key_id not in [k["accessKeyId"] for k in listed], "still listed after rm: %r" % listed)
        gone = cli(["accesskey", "rm", key_id], env=env_for(s))
        check(gone.returncode == 1 and "does not exist" in gone.stderr, gone.stderr)

        # The audit log names the key on what it refused.
        entries = expect_status(s.request("GET", "/v1/audit?limit=200"), 200, "audit").json()["events"]
        check(any(e.get("actor") == key_id and e.get("status") == 401 for e in entries),
              "no audit entry of the key's refusal: %r" % entries[:5])


@timeout(120)
def test_ecr_passwords_log_docker_in_by_role_expire_and_survive_a_restart():
    with Server() as s:
        admin = s.token
        expect_status(s.request("POST", "/v1/repositories", {"repositoryName": "team/app"}), 201, "a repository")
        deploy = create(s, "--role", "deploy")
        ro = create(s, "--role", "read-only")
        brief = create(s, "--ttl", "2s")
        password = ecr_password(deploy["accessKeyId"], deploy["secretAccessKey"], in_12h())

        # docker login --username AWS --password <password>: GET /v2/, then Docker's token flow.
        expect_status(v2(s, password), 200, "GET /v2/ with the ECR password")
        expect_status(v2(s, password, user="anything"), 200, "any user name")
        r = v2(s, password, path="/v2/token?service=berth&scope=repository:team/app:pull,push")
        expect_status(r, 200, "/v2/token with the ECR password")
        check(r.json()["token"].startswith("brt1."), "a registry token: %r" % r.json())
        r = v2(s, password, method="POST", path="/v2/team/app/blobs/uploads/")
        check(r.status == 202, "a deploy key starts a push: %r" % r)

        # Tampered, for another key, stale, or too far ahead: 401.
        tampered = password[:-1] + ("0" if password[-1] != "0" else "1")
        check(v2(s, tampered).status == 401, "a tampered password")
        other = ecr_password(ro["accessKeyId"], deploy["secretAccessKey"], in_12h())
        check(v2(s, other).status == 401, "another key's id with this key's secret")
        stale = ecr_password(deploy["accessKeyId"], deploy["secretAccessKey"], int(time.time() * 1000) - 1000)
        r = v2(s, stale)
        check(r.status == 401 and b"expired" in r.body, "a stale password: %r" % r)
        far = ecr_password(deploy["accessKeyId"], deploy["secretAccessKey"], in_12h() + 3600 * 1000)
        check(v2(s, far).status == 401, "a password for 13 hours")

        # A read-only key pulls but does not push.
        ro_password = ecr_password(ro["accessKeyId"], ro["secretAccessKey"], in_12h())
        expect_status(v2(s, ro_password), 200, "GET /v2/ with a read-only key")
        expect_status(v2(s, ro_password, path="/v2/team/app/tags/list"), 200, "a read-only key reads")
        r = v2(s, ro_password, method="POST", path="/v2/team/app/blobs/uploads/")
        check(r.status == 403 and b"read-only" in r.body, "a read-only key pushing: %r" % r)

        # An access key with a TTL expires with it, and its passwords with it.
        brief_password = ecr_password(brief["accessKeyId"], brief["secretAccessKey"], in_12h())
        expect_status(v2(s, brief_password), 200, "a key with a TTL, before it")
        time.sleep(2.2)
        r = v2(s, brief_password)
        check(r.status == 401 and b"expired" in r.body, "after the key's TTL: %r" % r)

        # A restart: the key that seals secrets is the same, so the secret still opens.
        s.stop()
        s.start()
        s.token = s.token or admin
        expect_status(v2(s, password), 200, "the ECR password after a restart")
        fresh = ecr_password(deploy["accessKeyId"], deploy["secretAccessKey"], in_12h())
        expect_status(v2(s, fresh), 200, "a new ECR password after a restart")
        check(v2(s, tampered).status == 401, "a tampered password after a restart")
        refused_as_bearer(s, deploy["secretAccessKey"], deploy["accessKeyId"], "the secret after a restart")


@timeout(60)
def test_limited_access_keys_and_their_rules():
    with Server() as s:
        expect_status(s.request("POST", "/v1/repositories", {"repositoryName": "team/app"}), 201, "a repository")
        expect_status(s.request("POST", "/v1/repositories", {"repositoryName": "other/app"}), 201, "a repository")
        key = create(s, "--repo", "team/*", "--cluster", "default")
        check(key["repositories"] == ["team/*"] and key["clusters"] == ["default"], "its limits: %r" % key)
        password = ecr_password(key["accessKeyId"], key["secretAccessKey"], in_12h())
        r = v2(s, password, method="POST", path="/v2/team/app/blobs/uploads/")
        check(r.status == 202, "within its repositories: %r" % r)
        r = v2(s, password, method="POST", path="/v2/other/app/blobs/uploads/")
        check(r.status == 401 and b"insufficient_scope" in (r.header("WWW-Authenticate") or "").encode(),
              "outside its repositories: %r" % r)
        # The same scope rules as tokens: an admin key has no limits; clusters must exist.
        bad = cli(["accesskey", "create", "--role", "admin", "--cluster", "default"], env=env_for(s))
        check(bad.returncode == 1 and "cannot be limited" in bad.stderr, bad.stderr)
        bad = cli(["accesskey", "create", "--cluster", "nowhere"], env=env_for(s))
        check(bad.returncode == 1 and "nowhere" in bad.stderr, bad.stderr)
