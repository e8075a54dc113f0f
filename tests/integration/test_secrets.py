"""Secrets (docs/security.md, "Secrets"): values sealed with AES-256-GCM under a
key kept apart from state.db, referenced from task definitions as ECS does
(`secrets` with `valueFrom`), given only to the node that starts a task needing
them, as environment or as a file on a tmpfs, and nowhere else: not in any API
answer, /metrics, the logs, the data directory in clear, or Docker's labels.
"""

import base64
import json
import os
import secrets as pysecrets
import subprocess

import dockerd
from harness import Server, check, cli, expect_exit, expect_status, scratch_dir, timeout, wait_until
from test_docker import LONG, all_in_one, box, docker, inspect, register, task


def setup_suite():
    dockerd.test_image(hold=False)


def env_for(s, token=None):
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": token or s.token, "BERTH_CA_FILE": s.ca_file}


def run_task(s, family):
    r = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": family}), 200, "run " + family)
    check(r.json()["tasks"], "nothing placed: %r" % r.json())
    return r.json()["tasks"][0]["taskId"]


def wait_status(s, task_id, status):
    wait_until(lambda: task(s, task_id)["lastStatus"] == status, wait=LONG, step=0.3,
               what="task %s %s" % (task_id, status))
    return task(s, task_id)


def container_of(task_id):
    ids = docker("ps", "-aq", "--no-trunc", "--filter", "label=berth.task=" + task_id).split()
    check(len(ids) == 1, "containers of %s: %r" % (task_id, ids))
    return ids[0]


def files_holding(root, needle, skip=()):
    """Paths under `root` whose bytes contain `needle` (bytes)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for f in filenames:
            path = os.path.join(dirpath, f)
            try:
                with open(path, "rb") as fh:
                    if needle in fh.read():
                        found.append(path)
            except OSError:
                pass
    return found


@timeout(200)
def test_a_secret_reaches_its_container_and_no_answer_log_or_file():
    password = "pw-" + pysecrets.token_hex(12)
    pem = "-----BEGIN KEY-----\n" + pysecrets.token_hex(24) + "\n-----END KEY-----\n"
    with all_in_one() as (s, node):
        env = env_for(s)
        # Created from stdin and from a file, byte for byte.
        out = expect_exit(cli(["secret", "create", "db-pass"], env=env, input=password), 0, "secret create").stdout
        check("created db-pass (version 1)" in out, out)
        pem_file = os.path.join(scratch_dir("pem"), "key.pem")
        with open(pem_file, "w") as f:
            f.write(pem)
        expect_exit(cli(["secret", "create", "tls/key", "--from-file", pem_file], env=env), 0, "create from file")
        again = cli(["secret", "create", "db-pass"], env=env, input="x")
        check(again.returncode == 1 and "already exists" in again.stderr and "berth secret rotate" in again.stderr,
              "a second create: %r" % (again.stderr,))

        register(s, "sec", [box("app", "sleep 3600", memory=16,
                                secrets=[{"name": "DB_PASSWORD", "valueFrom": "db-pass"},
                                         {"name": "key.pem", "berthTarget": "file",
                                          "valueFrom": "arn:aws:secretsmanager:local:000000000000:secret:tls/key"}])])
        first = run_task(s, "sec")
        wait_status(s, first, "RUNNING")
        cid = container_of(first)
        got = docker("exec", cid, "sh", "-c", 'printf %s "$DB_PASSWORD"')
        check(got == password, "DB_PASSWORD in the container: %r" % got)
        got = docker("exec", cid, "cat", "/run/secrets/key.pem")
        check(got == pem, "the secret file: %r" % got)
        wrote = subprocess.run(["docker", "exec", cid, "sh", "-c", "echo x > /run/secrets/key.pem"],
                               capture_output=True, text=True)
        check(wrote.returncode != 0, "the secret file is writable in the container")
        mounts = [m for m in inspect(cid)["Mounts"] if m["Destination"] == "/run/secrets"]
        check(len(mounts) == 1 and not mounts[0]["RW"], "the /run/secrets mount: %r" % mounts)
        source = mounts[0]["Source"]
        fs = subprocess.run(["stat", "-f", "-c", "%T", source], capture_output=True, text=True).stdout.strip()
        check(fs == "tmpfs", "secret files are on %r, not a tmpfs" % fs)
        labels = json.dumps(inspect(cid)["Config"]["Labels"])
        check(password not in labels and "key.pem" not in labels, "labels: %s" % labels)

        # Listed with its users, never with its value.
        out = expect_exit(cli(["secret", "ls"], env=env), 0, "secret ls").stdout
        check("db-pass" in out and "sec:1" in out and password not in out, out)

        # Rotation: a task started later gets the new value; the running one keeps its own.
        new_password = "pw2-" + pysecrets.token_hex(12)
        out = expect_exit(cli(["secret", "rotate", "db-pass"], env=env, input=new_password), 0, "rotate").stdout
        check("rotated db-pass (version 2)" in out, out)
        second = run_task(s, "sec")
        wait_status(s, second, "RUNNING")
        got = docker("exec", container_of(second), "sh", "-c", 'printf %s "$DB_PASSWORD"')
        check(got == new_password, "after rotation: %r" % got)
        got = docker("exec", cid, "sh", "-c", 'printf %s "$DB_PASSWORD"')
        check(got == password, "the running task's value changed: %r" % got)

        # Nowhere else: every answer the API gives about these, /metrics, the
        # server's log and output, and every file of the data directory but the
        # tmpfs the secret files are on.
        answers = []
        for path in ("/v1/tasks?maxResults=1000", "/v1/tasks/" + first, "/v1/taskdefinitions/sec",
                     "/v1/secrets", "/v1/secrets/db-pass", "/v1/secrets/tls/key", "/v1/nodes", "/metrics",
                     "/v1/services", "/v1/clusters/default"):
            r = s.request("GET", path)
            check(r.status in (200, 404), "GET %s: %r" % (path, r))
            answers.append(r.body)
        for clear in (password, new_password, pem):
            # In clear, and as the agent's stream carries it (base64).
            for v in (clear.encode(), base64.b64encode(clear.encode())):
                for body in answers:
                    check(v not in body, "a value in an API answer: %r" % body[:300])
                text = v.decode()
                check(text not in s.logs() and text not in "\n".join(s.stdout_lines), "a value in the server's log")
                secret_dir = os.path.join(s.data_dir, "agent", "secrets")
                held = files_holding(s.data_dir, v, skip=(secret_dir,))
                check(not held, "a value in clear in %r" % held)

        # Stopped: its secret files go.
        expect_status(s.request("POST", "/v1/tasks/%s/stop" % first, {}), 200, "stop")
        wait_status(s, first, "STOPPED")
        wait_until(lambda: not os.path.exists(source), wait=LONG, what="the stopped task's secret files removed")

        # Removed, then a task needing it fails to start, saying why.
        expect_exit(cli(["secret", "rm", "db-pass"], env=env), 0, "secret rm")
        third = run_task(s, "sec")
        stopped = wait_status(s, third, "STOPPED")
        reason = stopped.get("stoppedReason", "")
        check("secret db-pass" in reason and "DB_PASSWORD" in reason and "does not exist" in reason,
              "stopped reason: %r" % reason)


@timeout(90)
def test_secret_key_file_checks_and_bad_input():
    key_dir = scratch_dir("key")
    key = os.path.join(key_dir, "secret.key")
    with open(key, "w") as f:
        f.write(pysecrets.token_hex(32) + "\n")
    os.chmod(key, 0o644)
    s = Server(args=["--secret-key-file", key], start=False)
    s.ready_check = False
    try:
        s.start()
        raise AssertionError("the server started with a key file every user may read")
    except Exception as e:  # noqa: BLE001 - the start must fail, saying why
        check("chmod 600 " + key in s.logs() + str(e), "the refusal: %s" % e)
    os.chmod(key, 0o600)
    with Server(args=["--secret-key-file", key]) as s:
        data_key = os.path.join(s.data_dir, "secret.key")
        check(not os.path.exists(data_key), "a key was made though one was given")
        r = expect_status(s.request("POST", "/v1/secrets", {"name": "a", "value": "v"}), 201, "create")
        key_id = r.json()["secret"]["keyId"]
        check(len(key_id) == 16, "key id %r" % key_id)
        for body, fragment in (({"name": "bad name", "value": "v"}, "name: must be 1-512 characters"),
                               ({"name": "b"}, "value or valueBase64"),
                               ({"name": "b", "value": ""}, "must be 1-65536 bytes"),
                               ({"name": "b", "value": "x" * 70000}, "got 70000"),
                               ({"name": "b", "valueBase64": "!!"}, "valueBase64:")):
            r = s.request("POST", "/v1/secrets", body)
            check(r.status == 400 and fragment.encode() in r.body, "%r: %r" % (body, r.body[:300]))
        check(s.request("PUT", "/v1/secrets/none", {"value": "v"}).status == 404, "rotate of a missing secret")
        for sec, fragment in (([{"name": "X"}], "containerDefinitions[0].secrets[0].valueFrom: is required"),
                              ([{"name": "X", "valueFrom": "arn:aws:s3:::b"}], "an ARN must name a secret"),
                              ([{"name": "X", "valueFrom": "a", "berthTarget": "disk"}], "must be env or file"),
                              ([{"name": "../x", "valueFrom": "a", "berthTarget": "file"}], "a secret file's name"),
                              ([{"name": "X", "valueFrom": "a"}, {"name": "X", "valueFrom": "a"}], "set twice")):
            body = {"family": "f", "containerDefinitions": [{"name": "c", "image": "i", "memory": 8, "secrets": sec}]}
            r = s.request("POST", "/v1/taskdefinitions", body)
            check(r.status == 400 and fragment.encode() in r.body, "%r: %r" % (sec, r.body[:300]))
        # A read-only token lists names, and cannot create.
        ro = expect_status(s.request("POST", "/v1/tokens", {"role": "read-only"}), 201).json()["token"]["secret"]
        check(s.request("GET", "/v1/secrets", token=ro).status == 200, "read-only list")
        check(s.request("POST", "/v1/secrets", {"name": "c", "value": "v"}, token=ro).status == 403,
              "read-only create")
        # A secret kept for some clusters: tasks of another cannot take it, and the
        # tokens limited to other clusters cannot get it through a task.
        for name in ("prod", "dev"):
            expect_status(s.create_cluster(name), 201)
        r = expect_status(s.request("POST", "/v1/secrets", {"name": "prodpw", "value": "v", "clusters": ["prod"]}), 201)
        check(r.json()["secret"]["clusters"] == ["prod"], "clusters: %r" % r.json())
        check(s.request("POST", "/v1/secrets", {"name": "x", "value": "v", "clusters": ["nope"]}).status == 404,
              "a secret for a cluster that does not exist")
        td = {"family": "usesprod", "containerDefinitions": [
            {"name": "c", "image": "i", "memory": 8, "secrets": [{"name": "PW", "valueFrom": "prodpw"}]}]}
        expect_status(s.request("POST", "/v1/taskdefinitions", td), 201)
        r = s.request("POST", "/v1/tasks", {"cluster": "dev", "taskDefinition": "usesprod"})
        check(r.status == 403 and b"SecretNotForCluster" in r.body and b"prodpw is kept for tasks of other clusters"
              in r.body, "a dev task taking prod's secret: %d %r" % (r.status, r.body[:300]))
        r = s.request("POST", "/v1/services", {"cluster": "dev", "serviceName": "s", "taskDefinition": "usesprod",
                                               "desiredCount": 1})
        check(r.status == 403 and b"SecretNotForCluster" in r.body, "a dev service: %d" % r.status)
        r = s.request("POST", "/v1/tasks", {"cluster": "prod", "taskDefinition": "usesprod"})
        check(r.status == 200, "a prod task: %d %r" % (r.status, r.body[:300]))
        # A rotation keeps the clusters; a limited token cannot change secrets at all.
        expect_status(s.request("PUT", "/v1/secrets/prodpw", {"value": "v2"}), 200)
        check(s.request("GET", "/v1/secrets/prodpw").json()["secret"]["clusters"] == ["prod"], "rotation kept clusters")
        dev_token = expect_status(s.request("POST", "/v1/tokens", {"role": "deploy", "clusters": ["dev"]}),
                                  201).json()["token"]["secret"]
        r = s.request("PUT", "/v1/secrets/prodpw", {"value": "mine"}, token=dev_token)
        check(r.status == 403 and b"needs a token without limits" in r.body, "a limited token rotated: %r" % r.body)
    # Another key: the secrets sealed with the first are named at start.
    other = os.path.join(key_dir, "other.key")
    with open(other, "w") as f:
        f.write(pysecrets.token_hex(32))
    os.chmod(other, 0o600)
    with Server(data_dir=s.data_dir, args=["--secret-key-file", other]) as s2:
        check("secrets sealed with another key will not open" in s2.logs(), "no warning: %s" % s2.logs()[-1500:])
