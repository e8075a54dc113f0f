"""The AWS front end (src/aws/): Debian's real `aws` CLI (/usr/bin/aws, v2) drives
berth over TLS with SigV4-signed JSON 1.1 calls, against a real server, its local
agent and the real Docker engine; and the errors AWS clients expect, checked with
the CLI and with raw signed requests."""

import datetime
import hashlib
import hmac
import json
import os
import subprocess
import time
import uuid

import dockerd
from harness import (Server, TestFailure, check, expect_status, scratch_dir, timeout, wait_until)

AWS = "/usr/bin/aws"
LONG = 120.0


def access_key(s, role="admin", **limits):
    body = dict(limits, role=role)
    r = expect_status(s.request("POST", "/v1/accesskeys", body), 201, "create an access key")
    k = r.json()["accessKey"]
    return k["accessKeyId"], k["secretAccessKey"]


def aws_env(s, key, region="eu-north-1"):
    home = scratch_dir("awshome")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "AWS_ACCESS_KEY_ID": key[0],
        "AWS_SECRET_ACCESS_KEY": key[1],
        "AWS_DEFAULT_REGION": region,
        "AWS_CA_BUNDLE": s.ca_file,
        "AWS_CONFIG_FILE": os.path.join(home, "config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
        "AWS_MAX_ATTEMPTS": "1",
    }


def aws(s, env, *args, ok=True, wait=300, input=None):
    """Runs /usr/bin/aws against the server; returns (exit code, parsed JSON or None, stderr)."""
    cmd = [AWS, "--endpoint-url", s.url, "--output", "json"] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=wait, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if ok and p.returncode != 0:
        raise TestFailure("aws %s: exit %d\n%s\n%s" % (" ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    out = None
    if p.stdout.strip():
        try:
            out = json.loads(p.stdout)
        except ValueError:
            out = p.stdout
    return p.returncode, out, p.stderr


def aws_fails(s, env, code, *args):
    rc, _, err = aws(s, env, *args, ok=False)
    check(rc != 0 and "(%s)" % code in err, "aws %s: expected %s, got exit %d: %s" % (" ".join(args), code, rc, err[-800:]))
    return err


def signed(s, key, target, body, region="eu-north-1", service="ecs", when=None, secret=None):
    """A raw SigV4-signed JSON 1.1 call, signed here (not by botocore)."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz[:8]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    host = "127.0.0.1:%d" % s.port
    headers = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": amz, "x-amz-target": target}
    names = sorted(headers)
    canonical = "\n".join(["POST", "/", ""] + ["%s:%s" % (n, headers[n]) for n in names] +
                          ["", ";".join(names), hashlib.sha256(data).hexdigest()])
    scope = "%s/%s/%s/aws4_request" % (day, region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + (secret or key[1])).encode()
    for part in (day, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    h = {"Content-Type": headers["content-type"], "X-Amz-Date": amz, "X-Amz-Target": target,
         "Authorization": "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
                          % (key[0], scope, ";".join(names), sig)}
    conn = s.http_connection()
    try:
        conn.request("POST", "/", body=data, headers=h)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


ECS = "AmazonEC2ContainerServiceV20141113."
ECR = "AmazonEC2ContainerRegistry_V20150921."


@timeout(180)
def test_aws_clusters_regions_accounts_and_pagination():
    with Server(args=["--aws-account-id", "123456789012"]) as s:
        admin_key = access_key(s)
        env = aws_env(s, admin_key)
        _, out, _ = aws(s, env, "ecs", "create-cluster", "--cluster-name", "demo")
        arn = out["cluster"]["clusterArn"]
        check(arn == "arn:aws:ecs:eu-north-1:123456789012:cluster/demo", "cluster ARN %r" % arn)
        # Idempotent, as ECS's.
        _, again, _ = aws(s, env, "ecs", "create-cluster", "--cluster-name", "demo")
        check(again["cluster"]["clusterArn"] == arn, "create-cluster again: %r" % again)
        # Another region is echoed; a name or an ARN (of any region) is accepted.
        env2 = dict(env, AWS_DEFAULT_REGION="ap-south-2")
        _, d, _ = aws(s, env2, "ecs", "describe-clusters", "--clusters", arn, "nosuch")
        check([c["clusterArn"] for c in d["clusters"]] == ["arn:aws:ecs:ap-south-2:123456789012:cluster/demo"],
              "describe-clusters: %r" % d)
        check(d["failures"] == [{"arn": "nosuch", "reason": "MISSING"}], "failures %r" % d["failures"])
        for i in range(5):
            aws(s, env, "ecs", "create-cluster", "--cluster-name", "pg%d" % i)
        # The CLI follows nextToken page by page.
        _, all_, _ = aws(s, env, "ecs", "list-clusters", "--page-size", "2")
        names = sorted(a.rsplit("/", 1)[1] for a in all_["clusterArns"])
        check(names == sorted(["default", "demo"] + ["pg%d" % i for i in range(5)]), "list-clusters: %r" % names)
        _, first, _ = aws(s, env, "ecs", "list-clusters", "--max-items", "3")
        check(len(first["clusterArns"]) == 3 and first.get("NextToken"), "a page of 3: %r" % first)
        _, rest, _ = aws(s, env, "ecs", "list-clusters", "--starting-token", first["NextToken"])
        check(len(rest["clusterArns"]) == 4, "the rest: %r" % rest)
        aws(s, env, "ecs", "delete-cluster", "--cluster", "pg0")
        aws_fails(s, env, "ClusterNotFoundException", "ecs", "delete-cluster", "--cluster", "pg0")
        # Fields berth does not act on are accepted and reported back.
        # (the CLI shows only the model's fields: the reply's berthIgnoredFields and
        # header are in --debug's output, and whole in a raw call's answer)
        _, out, err = aws(s, env, "--debug", "ecs", "create-cluster", "--cluster-name", "cp",
                          "--capacity-providers", "FARGATE")
        check(out["cluster"]["clusterName"] == "cp" and '"berthIgnoredFields":["capacityProviders"]' in err
              and "Berth-Ignored-Fields" in err, "ignored fields not reported: %s" % err[-3000:])
        status, body = signed(s, admin_key, ECS + "CreateService",
                              {"cluster": "cp", "serviceName": "svc", "taskDefinition": "nosuch",
                               "desiredCount": 0, "launchType": "FARGATE",
                               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}}})
        check(status == 400 and body["__type"] == "ClientException", "CreateService of a missing definition: %r" % body)
        status, body = signed(s, admin_key, ECS + "UpdateCluster",
                              {"cluster": "cp", "settings": [{"name": "containerInsights", "value": "enabled"}]})
        check(status == 200 and body["berthIgnoredFields"] == ["settings"], "UpdateCluster: %r" % body)


@timeout(180)
def test_aws_errors_as_aws_clients_expect():
    with Server() as s:
        admin = access_key(s)
        env = aws_env(s, admin)
        # A wrong secret.
        aws_fails(s, aws_env(s, (admin[0], "x" * 40)), "SignatureDoesNotMatch", "ecs", "list-clusters")
        # An unknown key, and a revoked one.
        aws_fails(s, aws_env(s, ("BKIA" + "A" * 16, "x" * 40)), "UnrecognizedClientException", "ecs", "list-clusters")
        gone = access_key(s)
        expect_status(s.request("DELETE", "/v1/accesskeys/" + gone[0]), 200, "revoke")
        aws_fails(s, aws_env(s, gone), "UnrecognizedClientException", "ecs", "list-clusters")
        # A stale X-Amz-Date, signed correctly otherwise.
        old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
        status, body = signed(s, admin, ECS + "ListClusters", {}, when=old)
        check(status in (400, 401, 403) and body["__type"] == "InvalidSignatureException"
              and "Signature expired" in body["message"], "stale date: %d %r" % (status, body))
        status, body = signed(s, admin, ECS + "ListClusters", {})
        check(status == 200 and "clusterArns" in body, "the same call now: %d %r" % (status, body))
        # A read-only key may describe, not change.
        ro = aws_env(s, access_key(s, role="read-only"))
        aws(s, ro, "ecs", "list-clusters")
        err = aws_fails(s, ro, "AccessDeniedException", "ecs", "create-service", "--service-name", "x",
                        "--task-definition", "x", "--desired-count", "1")
        check("read-only" in err, "the refusal names the role: %s" % err)
        # A key limited to one cluster.
        aws(s, env, "ecs", "create-cluster", "--cluster-name", "team")
        limited = aws_env(s, access_key(s, role="deploy", clusters=["team"]))
        aws(s, limited, "ecs", "describe-clusters", "--clusters", "team")
        aws_fails(s, limited, "AccessDeniedException", "ecs", "delete-cluster", "--cluster", "default")
        # Unknown cluster, service.
        aws_fails(s, env, "ClusterNotFoundException", "ecs", "list-services", "--cluster", "nosuch")
        aws_fails(s, env, "ServiceNotFoundException", "ecs", "update-service", "--service", "nosuch",
                  "--desired-count", "1")
        # A malformed body, signed correctly.
        status, body = signed(s, admin, ECS + "ListClusters", b"{not json")
        check(status == 400 and body["__type"] == "SerializationException" and "line" in body["message"],
              "malformed body: %d %r" % (status, body))
        # Bad input is named.
        err = aws_fails(s, env, "InvalidParameterException", "ecs", "register-task-definition", "--family", "f",
                        "--container-definitions", '[{"name":"a","image":"busybox","memory":1}]')
        check("memory" in err, "the field is named: %s" % err)
        # An operation berth does not do.
        err = aws_fails(s, env, "UnsupportedOperationException", "ecs", "list-account-settings")
        check("ListAccountSettings" in err and "docs/compat/ecs.md" in err, "unsupported: %s" % err)
        err = aws_fails(s, env, "UnsupportedOperationException", "ecr", "describe-registry")
        check("DescribeRegistry" in err, "unsupported: %s" % err)
        # Signed for the wrong service.
        status, body = signed(s, admin, ECS + "ListClusters", {}, service="ecr")
        check(status >= 400 and body["__type"] == "InvalidSignatureException", "wrong service: %r" % body)
        # An access key is no bearer token, and a token signs nothing.
        r = s.request("GET", "/v1/clusters", token=admin[1])
        check(r.status == 401, "the secret as a bearer token: %d" % r.status)
        # The server is still serving after all that.
        s.assert_serving()
        # Every AWS call is in the audit log, with its operation.
        events = expect_status(s.request("GET", "/v1/audit?limit=1000"), 200, "audit").json()["events"]
        refused = [e for e in events if e["path"] == "/ " + ECS + "CreateService"]
        check(refused and refused[0]["status"] == 403 and refused[0]["errorCode"] == "AccessDeniedException",
              "the refused CreateService in the audit log: %r" % refused[:2])


def push_test_image(s, repo, docker_env_):
    host = "127.0.0.1:%d" % s.port
    ref = "%s/%s:1" % (host, repo)
    subprocess.run(["docker", "tag", dockerd.test_image(), ref], check=True, capture_output=True, env=docker_env_)
    p = subprocess.run(["docker", "push", ref], capture_output=True, text=True, env=docker_env_, timeout=300)
    check(p.returncode == 0, "docker push %s: %s %s" % (ref, p.stdout[-800:], p.stderr[-800:]))
    return ref


def docker_login_with_aws(s, env):
    """aws ecr get-login-password | docker login --username AWS --password-stdin; the docker env."""
    denv = dict(os.environ, DOCKER_CONFIG=scratch_dir("dockercfg"))
    _, password, _ = aws(s, env, "ecr", "get-login-password")
    host = "127.0.0.1:%d" % s.port
    p = subprocess.run(["docker", "login", "--username", "AWS", "--password-stdin", host], input=password.strip() + "\n",
                       capture_output=True, text=True, env=denv, timeout=120)
    check(p.returncode == 0, "docker login with the ECR password: %s %s" % (p.stdout, p.stderr))
    return denv


@timeout(420)
def test_aws_ecs_walkthrough_on_docker():
    dockerd.test_image()
    s = Server(args=["--node-lost-after", "3s", "--heartbeat-interval", "500ms"], local_agent=True)
    node = None
    try:
        env = aws_env(s, access_key(s, role="deploy"))
        wait_until(lambda: os.path.exists(os.path.join(s.data_dir, "agent", "node-id")), wait=LONG, what="local node")
        with open(os.path.join(s.data_dir, "agent", "node-id")) as f:
            node = f.read().strip()
        denv = docker_login_with_aws(s, env)
        image = push_test_image(s, "awstest/box", denv)
        _, out, _ = aws(s, env, "ecs", "create-cluster", "--cluster-name", "walk")
        check(out["cluster"]["status"] == "ACTIVE", "create-cluster: %r" % out)
        td = {"family": "aws-web", "containerDefinitions": [
            {"name": "web", "image": image, "memory": 32, "essential": True,
             "command": ["sh", "-c", "httpd -f -p 8080 -h /"], "portMappings": [{"containerPort": 8080}]}]}
        td_file = os.path.join(scratch_dir("td"), "td.json")
        with open(td_file, "w") as f:
            json.dump(td, f)
        _, out, _ = aws(s, env, "ecs", "register-task-definition", "--cli-input-json", "file://" + td_file)
        check(out["taskDefinition"]["revision"] == 1 and out["taskDefinition"]["taskDefinitionArn"].startswith(
            "arn:aws:ecs:eu-north-1:000000000000:task-definition/aws-web:1"), "register: %r" % out["taskDefinition"])
        # The local node is in the default cluster.
        _, out, _ = aws(s, env, "ecs", "create-service", "--cluster", "default", "--service-name", "aws-web",
                        "--task-definition", "aws-web:1", "--desired-count", "3")
        check(out["service"]["desiredCount"] == 3, "create-service: %r" % out)
        aws(s, env, "ecs", "wait", "services-stable", "--cluster", "default", "--services", "aws-web", wait=400)
        aws(s, env, "ecs", "update-service", "--cluster", "default", "--service", "aws-web", "--desired-count", "5")
        aws(s, env, "ecs", "wait", "services-stable", "--cluster", "default", "--services", "aws-web", wait=400)
        _, lt, _ = aws(s, env, "ecs", "list-tasks", "--cluster", "default", "--service-name", "aws-web")
        check(len(lt["taskArns"]) == 5, "list-tasks: %r" % lt)
        _, dt, _ = aws(s, env, "ecs", "describe-tasks", "--cluster", "default", "--tasks", *lt["taskArns"])
        check(len(dt["tasks"]) == 5 and all(t["lastStatus"] == "RUNNING" for t in dt["tasks"]), "describe-tasks %r"
              % [t["lastStatus"] for t in dt["tasks"]])
        # This test's node only: the engine is shared with whatever else runs.
        ps = subprocess.run(["docker", "ps", "--filter", "label=berth.service=aws-web", "--filter",
                             "label=berth.node=" + node, "--format",
                             '{{.Label "berth.task"}}'], capture_output=True, text=True, check=True).stdout.split()
        check(sorted(ps) == sorted(t["taskArn"].rsplit("/", 1)[1] for t in dt["tasks"]),
              "docker ps shows the tasks' containers: %r" % ps)
        victim = lt["taskArns"][0]
        _, st, _ = aws(s, env, "ecs", "stop-task", "--cluster", "default", "--task", victim, "--reason", "test")
        check(st["task"]["desiredStatus"] == "STOPPED", "stop-task: %r" % st["task"]["desiredStatus"])

        def replaced():
            _, l2, _ = aws(s, env, "ecs", "list-tasks", "--cluster", "default", "--service-name", "aws-web")
            return victim not in l2["taskArns"] and len(l2["taskArns"]) == 5 and l2
        wait_until(replaced, wait=LONG, step=1, what="a replacement task for the stopped one")
        aws(s, env, "ecs", "update-service", "--cluster", "default", "--service", "aws-web", "--desired-count", "0")
        aws(s, env, "ecs", "wait", "services-stable", "--cluster", "default", "--services", "aws-web", wait=400)
        _, ds, _ = aws(s, env, "ecs", "delete-service", "--cluster", "default", "--service", "aws-web")
        check(ds["service"]["serviceName"] == "aws-web", "delete-service: %r" % ds)
        wait_until(lambda: not subprocess.run(["docker", "ps", "-q", "--filter", "label=berth.service=aws-web",
                                               "--filter", "label=berth.node=" + node],
                                              capture_output=True, text=True).stdout.strip(),
                   wait=LONG, what="the service's containers gone")
        _, dc, _ = aws(s, env, "ecs", "delete-cluster", "--cluster", "walk")
        check(dc["cluster"]["status"] == "INACTIVE", "delete-cluster: %r" % dc)
        _, ci, _ = aws(s, env, "ecs", "list-container-instances", "--cluster", "default")
        check(len(ci["containerInstanceArns"]) == 1, "list-container-instances: %r" % ci)
        _, dci, _ = aws(s, env, "ecs", "describe-container-instances", "--cluster", "default",
                        "--container-instances", ci["containerInstanceArns"][0])
        check(dci["containerInstances"][0]["agentConnected"], "describe-container-instances: %r" % dci)
    finally:
        if s.alive():
            s.stop(wait=60)
        if node:
            ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=berth.node=" + node],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f"] + ids, capture_output=True)


@timeout(300)
def test_aws_ecr_walkthrough_with_docker_push():
    dockerd.ensure_docker()
    with Server() as s:
        key = access_key(s, role="deploy")
        env = aws_env(s, key)
        _, out, _ = aws(s, env, "ecr", "create-repository", "--repository-name", "awsecr/app")
        repo = out["repository"]
        check(repo["repositoryArn"] == "arn:aws:ecr:eu-north-1:000000000000:repository/awsecr/app", "repo %r" % repo)
        aws_fails(s, env, "RepositoryAlreadyExistsException", "ecr", "create-repository", "--repository-name",
                  "awsecr/app")
        denv = docker_login_with_aws(s, env)
        ref = push_test_image(s, "awsecr/app", denv)
        _, di, _ = aws(s, env, "ecr", "describe-images", "--repository-name", "awsecr/app")
        details = di["imageDetails"]
        local = subprocess.run(["docker", "inspect", "--format", "{{json .RepoDigests}}", ref], capture_output=True,
                               text=True, env=denv, check=True).stdout
        digest = [d for d in json.loads(local) if d.startswith("127.0.0.1")][0].split("@")[1]
        check(len(details) == 1 and details[0]["imageDigest"] == digest and details[0]["imageTags"] == ["1"]
              and details[0]["imageSizeInBytes"] > 0, "describe-images: %r (docker: %s)" % (details, digest))
        _, li, _ = aws(s, env, "ecr", "list-images", "--repository-name", "awsecr/app")
        check(li["imageIds"] == [{"imageDigest": digest, "imageTag": "1"}], "list-images: %r" % li)
        _, bg, _ = aws(s, env, "ecr", "batch-get-image", "--repository-name", "awsecr/app", "--image-ids",
                       "imageTag=1", "imageTag=nosuch")
        manifest = bg["images"][0]["imageManifest"]
        check(hashlib.sha256(manifest.encode()).hexdigest() == digest.split(":")[1]
              and bg["failures"][0]["failureCode"] == "ImageNotFound", "batch-get-image: %r" % bg)
        layers = [l["digest"] for l in json.loads(manifest)["layers"]]
        _, bc, _ = aws(s, env, "ecr", "batch-check-layer-availability", "--repository-name", "awsecr/app",
                       "--layer-digests", layers[0], "sha256:" + "0" * 64)
        avail = {l["layerDigest"]: l["layerAvailability"] for l in bc["layers"]}
        check(avail == {layers[0]: "AVAILABLE", "sha256:" + "0" * 64: "UNAVAILABLE"}, "layers: %r" % bc)
        # PutImage: the same manifest under another tag.
        mt = bg["images"][0]["imageManifestMediaType"]
        _, pi, _ = aws(s, env, "ecr", "put-image", "--repository-name", "awsecr/app", "--image-tag", "2",
                       "--image-manifest", manifest, "--image-manifest-media-type", mt)
        check(pi["image"]["imageId"] == {"imageDigest": digest, "imageTag": "2"}, "put-image: %r" % pi)
        aws_fails(s, env, "ImageAlreadyExistsException", "ecr", "put-image", "--repository-name", "awsecr/app",
                  "--image-tag", "2", "--image-manifest", manifest, "--image-manifest-media-type", mt)
        aws(s, env, "ecr", "put-image-tag-mutability", "--repository-name", "awsecr/app", "--image-tag-mutability",
            "IMMUTABLE")
        aws_fails(s, env, "ImageTagAlreadyExistsException", "ecr", "put-image", "--repository-name", "awsecr/app",
                  "--image-tag", "1", "--image-manifest", json.dumps(json.loads(manifest), indent=1),
                  "--image-manifest-media-type", mt)
        aws(s, env, "ecr", "put-image-tag-mutability", "--repository-name", "awsecr/app", "--image-tag-mutability",
            "MUTABLE")
        policy = json.dumps({"rules": [{"rulePriority": 1, "description": "keep none",
                                        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                                      "countNumber": 1},
                                        "action": {"type": "expire"}}]})
        aws_fails(s, env, "LifecyclePolicyNotFoundException", "ecr", "get-lifecycle-policy", "--repository-name",
                  "awsecr/app")
        aws(s, env, "ecr", "put-lifecycle-policy", "--repository-name", "awsecr/app", "--lifecycle-policy-text", policy)
        _, gp, _ = aws(s, env, "ecr", "get-lifecycle-policy", "--repository-name", "awsecr/app")
        check(json.loads(gp["lifecyclePolicyText"]) == json.loads(policy), "get-lifecycle-policy: %r" % gp)
        _, sp, _ = aws(s, env, "ecr", "start-lifecycle-policy-preview", "--repository-name", "awsecr/app")
        check(sp["status"] in ("IN_PROGRESS", "COMPLETE"), "start preview: %r" % sp)
        _, pv, _ = aws(s, env, "ecr", "get-lifecycle-policy-preview", "--repository-name", "awsecr/app")
        check(pv["status"] == "COMPLETE" and pv["summary"]["expiringImageTotalCount"] == 0, "preview: %r" % pv)
        aws(s, env, "ecr", "delete-lifecycle-policy", "--repository-name", "awsecr/app")
        _, bd, _ = aws(s, env, "ecr", "batch-delete-image", "--repository-name", "awsecr/app", "--image-ids",
                       "imageDigest=" + digest)
        check(bd["imageIds"] and bd["imageIds"][0]["imageDigest"] == digest and not bd["failures"],
              "batch-delete-image: %r" % bd)
        _, di, _ = aws(s, env, "ecr", "describe-images", "--repository-name", "awsecr/app")
        check(di["imageDetails"] == [], "after the delete: %r" % di)
        # The login password ends with its key.
        expect_status(s.request("DELETE", "/v1/accesskeys/" + key[0]), 200, "revoke")
        p = subprocess.run(["docker", "pull", ref], capture_output=True, text=True, env=denv, timeout=120)
        check(p.returncode != 0, "a pull with the revoked key's password succeeded")
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, env=denv)
        env = aws_env(s, access_key(s))
        aws(s, env, "ecr", "delete-repository", "--repository-name", "awsecr/app", "--force")
        aws_fails(s, env, "RepositoryNotFoundException", "ecr", "describe-repositories", "--repository-names",
                  "awsecr/app")


@timeout(240)
def test_aws_task_definitions_tasks_and_container_instances_on_simulated_nodes():
    from harness import Agent
    with Server(args=["--node-lost-after", "5s"]) as s:
        env = aws_env(s, access_key(s, role="deploy"))
        agent = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201).json()["token"]["secret"]
        with Agent(s, 3, agent, id_prefix="awssim"):
            def instances():
                _, out, _ = aws(s, env, "ecs", "list-container-instances")
                return len(out["containerInstanceArns"]) == 3 and out["containerInstanceArns"]
            arns = wait_until(instances, wait=60, step=0.5, what="three simulated nodes")
            for rev in (1, 2):
                aws(s, env, "ecs", "register-task-definition", "--family", "sim-app", "--container-definitions",
                    json.dumps([{"name": "app", "image": "busybox", "memory": 64, "environment": [
                        {"name": "REV", "value": str(rev)}]}]))
            aws(s, env, "ecs", "register-task-definition", "--family", "other", "--container-definitions",
                json.dumps([{"name": "o", "image": "busybox", "memory": 64}]))
            _, fams, _ = aws(s, env, "ecs", "list-task-definition-families")
            check(fams["families"] == ["other", "sim-app"], "list-task-definition-families: %r" % fams)
            _, defs, _ = aws(s, env, "ecs", "list-task-definitions", "--family-prefix", "sim-app", "--sort", "DESC")
            check([a.rsplit("/", 1)[1] for a in defs["taskDefinitionArns"]] == ["sim-app:2", "sim-app:1"],
                  "list-task-definitions: %r" % defs)
            _, td, _ = aws(s, env, "ecs", "describe-task-definition", "--task-definition", "sim-app")
            check(td["taskDefinition"]["revision"] == 2, "describe-task-definition (latest): %r" % td)
            aws_fails(s, env, "ClientException", "ecs", "describe-task-definition", "--task-definition", "nosuch:1")
            _, dr, _ = aws(s, env, "ecs", "deregister-task-definition", "--task-definition", "sim-app:1")
            check(dr["taskDefinition"]["status"] == "INACTIVE", "deregister-task-definition: %r" % dr)
            # Newer than this CLI's model: a raw signed call, as a newer SDK would make.
            key = (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
            status, body = signed(s, key, ECS + "DeleteTaskDefinitions",
                                  {"taskDefinitions": ["sim-app:1", "sim-app:2"]})
            check(status == 200 and [t["status"] for t in body["taskDefinitions"]] == ["DELETE_IN_PROGRESS"]
                  and "still in ACTIVE" in body["failures"][0]["reason"], "DeleteTaskDefinitions: %r" % body)
            # RunTask and StartTask.
            _, rt, _ = aws(s, env, "ecs", "run-task", "--task-definition", "sim-app", "--count", "4",
                           "--started-by", "aws-test")
            check(len(rt["tasks"]) == 4 and not rt["failures"], "run-task: %r" % rt)
            _, st, _ = aws(s, env, "ecs", "start-task", "--task-definition", "other", "--container-instances",
                           arns[1])
            check(len(st["tasks"]) == 1 and st["tasks"][0]["containerInstanceArn"] == arns[1],
                  "start-task placed on the instance named: %r" % st)
            _, lt, _ = aws(s, env, "ecs", "list-tasks", "--started-by", "aws-test", "--desired-status", "RUNNING")
            check(len(lt["taskArns"]) == 4, "list-tasks --started-by: %r" % lt)
            # A service, described.
            aws(s, env, "ecs", "create-service", "--service-name", "sim-svc", "--task-definition", "other",
                "--desired-count", "2")
            _, ds, _ = aws(s, env, "ecs", "describe-services", "--services", "sim-svc", "nosuch")
            check(ds["services"][0]["serviceName"] == "sim-svc" and ds["failures"][0]["reason"] == "MISSING",
                  "describe-services: %r" % ds)
            # Draining a container instance moves its service tasks; activate it again.
            _, up, _ = aws(s, env, "ecs", "update-container-instances-state", "--container-instances", arns[0],
                           "nosuch", "--status", "DRAINING")
            check(up["containerInstances"][0]["status"] == "DRAINING" and up["failures"][0]["arn"] == "nosuch",
                  "update-container-instances-state: %r" % up)
            _, up, _ = aws(s, env, "ecs", "update-container-instances-state", "--container-instances", arns[0],
                           "--status", "ACTIVE")
            check(up["containerInstances"][0]["status"] == "ACTIVE", "activate: %r" % up)
            aws_fails(s, env, "InvalidParameterException", "ecs", "deregister-container-instance",
                      "--container-instance", arns[2])
            _, dg, _ = aws(s, env, "ecs", "deregister-container-instance", "--container-instance", arns[2], "--force")
            check(dg["containerInstance"]["status"] == "INACTIVE", "deregister-container-instance: %r" % dg)
            # The ECR login token, as the CLI decodes it.
            _, tok, _ = aws(s, env, "ecr", "get-authorization-token")
            data = tok["authorizationData"][0]
            import base64
            user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
            check(user == "AWS" and password.startswith("berthecr1." + key[0] + ".")
                  and data["proxyEndpoint"] == s.url, "get-authorization-token: %r" % data)


@timeout(240)
def test_aws_calls_to_followers_reach_the_leader():
    from test_cluster import three_servers
    servers = three_servers()
    try:
        leader, follower = servers[0], servers[1]
        key = access_key(leader)
        wait_until(lambda: follower.request("GET", "/v1/clusters").status == 200, what="the follower serving")
        env = aws_env(follower, key)
        # The key was made on the leader; the follower knows it once it has applied it.
        wait_until(lambda: aws(follower, env, "ecs", "list-clusters", ok=False)[0] == 0, wait=30,
                   what="the key known on the follower")
        _, out, _ = aws(follower, env, "ecs", "create-cluster", "--cluster-name", "via-follower")
        check(out["cluster"]["clusterName"] == "via-follower", "create-cluster on a follower: %r" % out)
        # Read back from the follower it was asked of, at once.
        _, d, _ = aws(follower, env, "ecs", "describe-clusters", "--clusters", "via-follower")
        check(d["clusters"] and d["clusters"][0]["status"] == "ACTIVE", "read back on the follower: %r" % d)
        _, d, _ = aws(leader, aws_env(leader, key), "ecs", "describe-clusters", "--clusters", "via-follower")
        check(d["clusters"], "on the leader: %r" % d)
        aws(follower, env, "ecr", "create-repository", "--repository-name", "viafollower/x")
        aws_fails(follower, env, "RepositoryAlreadyExistsException", "ecr", "create-repository",
                  "--repository-name", "viafollower/x")
        aws_fails(follower, aws_env(follower, (key[0], "y" * 40)), "SignatureDoesNotMatch", "ecs", "create-cluster",
                  "--cluster-name", "nope")
    finally:
        for s in servers:
            s.kill()
