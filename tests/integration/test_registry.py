"""The built-in registry (/v2/, /v1/repositories): real docker and skopeo clients,
the chunked upload protocol byte by byte, bad input, auth, ECR semantics,
concurrency, kill -9 and online garbage collection."""

import base64
import hashlib
import http.client
import json
import os
import socket
import shutil
import subprocess
import threading
import time
import uuid

import dockerd
from harness import (WAIT, Server, TestFailure, check, cli, expect_exit, scratch_dir, timeout)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


# --- a small registry client over http.client ---


def basic(token):
    return "Basic " + base64.b64encode(("x:" + token).encode()).decode()


def req(s, method, path, body=None, headers=None, token="admin"):
    """One request; `token` "admin", None (anonymous) or a token string, sent as Basic."""
    if token == "admin":
        token = s.token
    h = dict(headers or {})
    if token is not None:
        h.setdefault("Authorization", basic(token))
    conn = s.http_connection(WAIT)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        r.data = r.read()
        return r
    finally:
        conn.close()


def oci_error(r, status, code, what):
    """Checks an answer in the OCI error shape; returns its first error."""
    check(r.status == status, "%s: status %d, want %d: %r" % (what, r.status, status, r.data[:300]))
    errs = json.loads(r.data)["errors"]
    check(errs[0]["code"] == code, "%s: code %r, want %r (%r)" % (what, errs[0]["code"], code, errs))
    check(errs[0]["message"] and "detail" in errs[0], "%s: message and detail: %r" % (what, errs[0]))
    return errs[0]


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(s, repo, data, token="admin"):
    """Monolithic upload: POST then PUT with the bytes; returns the digest."""
    r = req(s, "POST", "/v2/%s/blobs/uploads/" % repo, token=token)
    check(r.status == 202, "start upload: %d %r" % (r.status, r.data[:200]))
    loc = r.getheader("Location")
    d = digest_of(data)
    r = req(s, "PUT", loc + "?digest=" + d, body=data, headers={"Content-Type": "application/octet-stream"}, token=token)
    check(r.status == 201, "finish upload: %d %r" % (r.status, r.data[:200]))
    check(r.getheader("Docker-Content-Digest") == d, "Docker-Content-Digest %r" % r.getheader("Docker-Content-Digest"))
    return d


def image_manifest(config_digest, config_size, layers, extra=None):
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n} for d, n in layers]}
    m.update(extra or {})
    return json.dumps(m).encode()


def push_image(s, repo, tag, token="admin", layers=2, extra=None):
    """Pushes a small image of random blobs; returns (manifest digest, blob digests)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": uuid.uuid4().hex}).encode()
    cd = push_blob(s, repo, config, token)
    ls = []
    for _ in range(layers):
        data = os.urandom(3000)
        ls.append((push_blob(s, repo, data, token), len(data)))
    body = image_manifest(cd, len(config), ls, extra)
    r = req(s, "PUT", "/v2/%s/manifests/%s" % (repo, tag), body=body, headers={"Content-Type": OCI_MANIFEST}, token=token)
    check(r.status == 201, "put manifest %s:%s: %d %r" % (repo, tag, r.status, r.data[:300]))
    return r.getheader("Docker-Content-Digest"), [cd] + [d for d, _ in ls]


def blob_path(s, digest):
    hexd = digest.split(":")[1]
    return os.path.join(s.data_dir, "registry", "blobs", "sha256", hexd[:2], hexd)


def all_blob_files(s):
    out = []
    base = os.path.join(s.data_dir, "registry", "blobs", "sha256")
    for sub in os.listdir(base):
        out += ["sha256:" + f for f in os.listdir(os.path.join(base, sub))]
    return out


def upload_files(s):
    return os.listdir(os.path.join(s.data_dir, "registry", "uploads"))


# --- docker and skopeo ---


def docker(args, env, check_ok=True, wait=300):
    p = subprocess.run(["docker"] + args, capture_output=True, text=True, env=env, timeout=wait, stdin=subprocess.DEVNULL)
    if check_ok and p.returncode != 0:
        raise TestFailure("docker %s: exit %d\n%s%s" % (" ".join(args), p.returncode, p.stdout[-1500:], p.stderr[-1500:]))
    return p


def docker_env():
    """A docker client with a config directory of its own (logins stay out of ~/.docker)."""
    e = dict(os.environ)
    e["DOCKER_CONFIG"] = scratch_dir("dockercfg")
    return e


def build_image(env, tag, layers=3, size=64 * 1024):
    """An image FROM the local busybox with `layers` layers of random data."""
    base = dockerd.test_image()
    ctx = scratch_dir("ctx")
    lines = ["FROM " + base]
    for i in range(layers):
        with open(os.path.join(ctx, "data%d" % i), "wb") as f:
            f.write(os.urandom(size))
        lines.append("COPY data%d /data%d" % (i, i))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("\n".join(lines) + "\n")
    docker(["build", "-q", "-t", tag, ctx], env)


@timeout(300)
def test_docker_login_push_pull_delete():
    dockerd.ensure_docker()
    env = docker_env()
    with Server() as s:
        host = "127.0.0.1:%d" % s.port
        p = docker(["login", host, "-u", "x", "--password-stdin"], env, check_ok=False)
        check(p.returncode != 0, "login without a password must fail")
        p = subprocess.run(["docker", "login", host, "-u", "x", "--password-stdin"], input="berth_wrong\n",
                           capture_output=True, text=True, env=env, timeout=120)
        check(p.returncode != 0, "login with a wrong token succeeded: %s" % p.stdout)
        p = subprocess.run(["docker", "login", host, "-u", "anyone", "--password-stdin"], input=s.token + "\n",
                           capture_output=True, text=True, env=env, timeout=120)
        check(p.returncode == 0, "login with the admin token: %s %s" % (p.stdout, p.stderr))
        ref = "%s/regtest/app-%s:1" % (host, uuid.uuid4().hex[:8])
        repo = ref.split("/", 1)[1].split(":")[0]
        try:
            build_image(env, ref)
            docker(["push", ref], env)
            out = docker(["inspect", "--format", "{{json .RepoDigests}}", ref], env).stdout
            digest = [d for d in json.loads(out) if d.startswith(host)][0].split("@")[1]
            docker(["rmi", ref], env)
            docker(["pull", ref], env)
            got = docker(["run", "--rm", ref, "sh", "-c", "cat /data0 /data1 /data2 | wc -c"], env).stdout.strip()
            check(got == str(3 * 64 * 1024), "the pulled image's data: %r" % got)
            docker(["rmi", ref], env)
            by_digest = "%s/%s@%s" % (host, repo, digest)
            docker(["pull", by_digest], env)
            docker(["rmi", by_digest], env)
            # The CLI sees the image with its tag; then delete it by digest.
            e = {"BERTH_SERVER": "https://" + host, "BERTH_TOKEN": s.token}
            # A client that never logged in pulls once the repository allows anonymous pulls.
            anonymous = docker_env()
            p = docker(["pull", ref], anonymous, check_ok=False)
            check(p.returncode != 0, "an anonymous pull of a private repository succeeded")
            expect_exit(cli(["repo", "update", repo, "--anonymous-pull", "true"], env=e), 0, "repo update")
            docker(["pull", ref], anonymous)
            docker(["rmi", ref], anonymous)
            ls = expect_exit(cli(["image", "ls", repo, "--json"], env=e), 0, "image ls")
            details = json.loads(ls.stdout)["imageDetails"]
            check([d["imageDigest"] for d in details] == [digest], "imageDetails %r" % details)
            check(details[0]["imageTags"] == ["1"] and details[0]["imageSizeInBytes"] > 3 * 64 * 1024, "%r" % details)
            r = req(s, "DELETE", "/v2/%s/manifests/%s" % (repo, digest))
            check(r.status == 202, "delete by digest: %d %r" % (r.status, r.data))
            # The engine may answer a pull by digest from content it still holds, so
            # the registry's side is checked directly, and the tag (which only the
            # registry can resolve) must no longer pull.
            oci_error(req(s, "GET", "/v2/%s/manifests/%s" % (repo, digest)), 404, "MANIFEST_UNKNOWN", "deleted digest")
            p = docker(["pull", ref], env, check_ok=False)
            check(p.returncode != 0 and "manifest unknown" in p.stderr.lower(),
                  "pull of the deleted image's tag: exit %d %s" % (p.returncode, p.stderr[-500:]))
        finally:
            docker(["rmi", "-f", ref], env, check_ok=False)
            docker(["image", "prune", "-f"], env, check_ok=False)


@timeout(240)
def test_skopeo_oci_index_round_trip():
    dockerd.ensure_docker()
    base = dockerd.test_image()
    with Server() as s:
        host = "127.0.0.1:%d" % s.port
        creds = "x:" + s.token
        lay = os.path.join(scratch_dir("oci"), "layout")
        p = subprocess.run(["skopeo", "copy", "docker-daemon:" + base, "oci:%s:1" % lay], capture_output=True, text=True,
                           timeout=120)
        check(p.returncode == 0, "skopeo copy from the daemon: %s" % p.stderr)
        # Wrap the image in an OCI index, as a multi-platform image is.
        with open(os.path.join(lay, "index.json")) as f:
            top = json.load(f)
        m = top["manifests"][0]
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"],
             "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
        with open(os.path.join(lay, "blobs", "sha256", hashlib.sha256(index).hexdigest()), "wb") as f:
            f.write(index)
        top["manifests"] = [{"mediaType": OCI_INDEX, "digest": digest_of(index), "size": len(index),
                             "annotations": {"org.opencontainers.image.ref.name": "1"}}]
        with open(os.path.join(lay, "index.json"), "w") as f:
            json.dump(top, f)
        dest = "docker://%s/regtest/multi:1" % host
        # Verified TLS: skopeo trusts the cluster CA from a cert dir (DIR/ca.crt).
        certs = scratch_dir("certs")
        shutil.copy(s.ca_file, os.path.join(certs, "ca.crt"))
        p = subprocess.run(["skopeo", "copy", "--all", "--dest-cert-dir", certs, "--dest-creds", creds,
                            "oci:%s:1" % lay, dest], capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "skopeo copy to the registry: %s" % p.stderr)
        p = subprocess.run(["skopeo", "inspect", "--raw", "--cert-dir", certs, "--creds", creds, dest],
                           capture_output=True, timeout=60)
        check(p.returncode == 0, "skopeo inspect: %r" % p.stderr)
        check(p.stdout == index, "the index came back changed: %r" % p.stdout[:300])
        p = subprocess.run(["skopeo", "inspect", "--cert-dir", certs, "--creds", creds, dest],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0 and json.loads(p.stdout)["Digest"] == digest_of(index), "inspect: %s %s" % (p.stdout, p.stderr))
        out = os.path.join(scratch_dir("oci"), "back")
        p = subprocess.run(["skopeo", "copy", "--all", "--src-cert-dir", certs, "--src-creds", creds, dest,
                            "oci:%s:1" % out], capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "skopeo copy back: %s" % p.stderr)
        with open(os.path.join(out, "index.json")) as f:
            back = json.load(f)
        check(back["manifests"][0]["digest"] == digest_of(index), "copied back: %r" % back)
        r = req(s, "GET", "/v2/regtest/multi/manifests/1", headers={"Accept": OCI_INDEX})
        check(r.status == 200 and r.getheader("Content-Type") == OCI_INDEX, "GET index: %d %r" % (r.status, r.getheaders()))


def test_api_check_and_auth():
    with Server() as s:
        r = req(s, "GET", "/v2/", token=None)
        oci_error(r, 401, "UNAUTHORIZED", "anonymous /v2/")
        challenge = r.getheader("WWW-Authenticate")
        check(challenge.startswith('Bearer realm="https://127.0.0.1:%d/v2/token"' % s.port), "challenge %r" % challenge)
        r = req(s, "GET", "/v2/regtest/a/tags/list", token=None)
        check('scope="repository:regtest/a:pull"' in r.getheader("WWW-Authenticate"), "%r" % r.getheader("WWW-Authenticate"))
        r = req(s, "GET", "/v2/", token="berth_not_a_token")
        oci_error(r, 401, "UNAUTHORIZED", "a wrong token")
        r = req(s, "GET", "/v2/")
        check(r.status == 200 and r.getheader("Docker-Distribution-API-Version") == "registry/2.0", "%r" % r.status)
        # Docker's token flow: a scoped token for pull and push.
        r = req(s, "GET", "/v2/token?service=berth&scope=repository:regtest/a:pull,push")
        check(r.status == 200, "token: %d %r" % (r.status, r.data))
        tok = json.loads(r.data)["token"]
        check(json.loads(r.data)["expires_in"] > 0, "expires_in")
        r = req(s, "POST", "/v2/regtest/a/blobs/uploads/", token=None, headers={"Authorization": "Bearer " + tok})
        check(r.status == 202, "push with a scoped token: %d %r" % (r.status, r.data))
        r = req(s, "POST", "/v2/regtest/other/blobs/uploads/", token=None, headers={"Authorization": "Bearer " + tok})
        oci_error(r, 401, "UNAUTHORIZED", "another repository with a scoped token")
        check('error="insufficient_scope"' in r.getheader("WWW-Authenticate"), "%r" % r.getheader("WWW-Authenticate"))
        forged = tok[:-4] + ("0000" if not tok.endswith("0000") else "1111")
        r = req(s, "GET", "/v2/", token=None, headers={"Authorization": "Bearer " + forged})
        oci_error(r, 401, "UNAUTHORIZED", "a forged registry token")
        # Without credentials the token endpoint gives an anonymous token: no scope on a private repository.
        r = req(s, "GET", "/v2/token?scope=repository:regtest/a:pull", token=None)
        check(r.status == 200, "token endpoint without credentials: %d" % r.status)
        anon = {"Authorization": "Bearer " + json.loads(r.data)["token"]}
        oci_error(req(s, "GET", "/v2/regtest/a/tags/list", token=None, headers=anon), 401, "UNAUTHORIZED",
                  "an anonymous token on a private repository")
        r = req(s, "GET", "/v2/token?scope=repository:regtest/a:pull", token="berth_wrong")
        check(r.status == 401, "token endpoint with a wrong token: %d" % r.status)
        # Roles: read-only and agent pull; neither pushes.
        digest, _ = push_image(s, "regtest/a", "v1")
        for role in ("read-only", "agent"):
            secret = json.loads(s.request("POST", "/v1/tokens", {"role": role}).body)["token"]["secret"]
            r = req(s, "GET", "/v2/regtest/a/manifests/v1", token=secret)
            check(r.status == 200 and r.getheader("Docker-Content-Digest") == digest, "%s pulls: %d" % (role, r.status))
            r = req(s, "POST", "/v2/regtest/a/blobs/uploads/", token=secret)
            oci_error(r, 403, "DENIED", "%s pushes" % role)
            r = req(s, "GET", "/v2/token?scope=repository:regtest/a:pull,push", token=secret)
            tok = json.loads(r.data)["token"]
            r = req(s, "POST", "/v2/regtest/a/blobs/uploads/", token=None, headers={"Authorization": "Bearer " + tok})
            oci_error(r, 403, "DENIED", "%s pushes with a registry token" % role)
        # Anonymous pulls only where the repository allows them; never pushes.
        oci_error(req(s, "GET", "/v2/regtest/a/manifests/v1", token=None), 401, "UNAUTHORIZED", "anonymous pull, private")
        r = s.request("PATCH", "/v1/repositories/regtest%2Fa", {"anonymousPull": True})
        check(r.status == 200 and r.json()["repository"]["anonymousPull"] is True, "PATCH anonymousPull: %r" % r)
        r = req(s, "GET", "/v2/regtest/a/manifests/v1", token=None)
        check(r.status == 200 and r.getheader("Docker-Content-Digest") == digest, "anonymous pull: %d" % r.status)
        oci_error(req(s, "POST", "/v2/regtest/a/blobs/uploads/", token=None), 401, "UNAUTHORIZED", "anonymous push")
        oci_error(req(s, "GET", "/v2/", token=None), 401, "UNAUTHORIZED", "anonymous API check")
        r = req(s, "GET", "/v2/token?scope=repository:regtest/a:pull,push&scope=repository:regtest/b:pull", token=None)
        check(r.status == 200, "anonymous token: %d %r" % (r.status, r.data))
        tok = json.loads(r.data)["token"]
        bearer = {"Authorization": "Bearer " + tok}
        check(req(s, "GET", "/v2/regtest/a/manifests/v1", token=None, headers=bearer).status == 200, "anonymous token pull")
        oci_error(req(s, "POST", "/v2/regtest/a/blobs/uploads/", token=None, headers=bearer), 403, "DENIED",
                  "anonymous token push")
        push_image(s, "regtest/b", "v1")
        oci_error(req(s, "GET", "/v2/regtest/b/manifests/v1", token=None, headers=bearer), 401, "UNAUTHORIZED",
                  "anonymous token on a private repository")


def test_manifests_tags_and_referrers():
    with Server() as s:
        d1, blobs = push_image(s, "regtest/m", "v1")
        r = req(s, "HEAD", "/v2/regtest/m/manifests/v1")
        check(r.status == 200 and r.getheader("Docker-Content-Digest") == d1, "HEAD manifest %d" % r.status)
        body = req(s, "GET", "/v2/regtest/m/manifests/" + d1).data
        check(digest_of(body) == d1, "GET by digest returns the exact bytes")
        for t in ("b", "a", "c", "v2"):
            r = req(s, "PUT", "/v2/regtest/m/manifests/" + t, body=body, headers={"Content-Type": OCI_MANIFEST})
            check(r.status == 201, "tag %s: %d" % (t, r.status))
        r = req(s, "GET", "/v2/regtest/m/tags/list?n=2")
        check(json.loads(r.data) == {"name": "regtest/m", "tags": ["a", "b"]}, "first page %r" % r.data)
        link = r.getheader("Link")
        check(link and 'rel="next"' in link and "last=b" in link, "Link %r" % link)
        r = req(s, "GET", link[1:link.index(">")])
        check(json.loads(r.data)["tags"] == ["c", "v1"], "second page %r" % r.data)
        r = req(s, "GET", "/v2/regtest/m/tags/list?n=2&last=v1")
        check(json.loads(r.data)["tags"] == ["v2"] and r.getheader("Link") is None, "last page %r" % r.data)
        # Referrers: an artifact whose subject is the image.
        cfg = b"{}"
        cd = push_blob(s, "regtest/m", cfg)
        art = image_manifest(cd, 2, [(blobs[1], 3000)], {
            "artifactType": "application/vnd.example.sbom",
            "subject": {"mediaType": OCI_MANIFEST, "digest": d1, "size": len(body)},
            "annotations": {"org.example": "yes"}})
        ad = digest_of(art)
        r = req(s, "PUT", "/v2/regtest/m/manifests/" + ad, body=art, headers={"Content-Type": OCI_MANIFEST})
        check(r.status == 201 and r.getheader("OCI-Subject") == d1, "put artifact: %d %r" % (r.status, r.getheaders()))
        r = req(s, "GET", "/v2/regtest/m/referrers/" + d1)
        idx = json.loads(r.data)
        check(r.getheader("Content-Type") == OCI_INDEX and [m["digest"] for m in idx["manifests"]] == [ad], "referrers %r" % idx)
        check(idx["manifests"][0]["artifactType"] == "application/vnd.example.sbom", "%r" % idx)
        check(idx["manifests"][0]["annotations"] == {"org.example": "yes"}, "%r" % idx)
        r = req(s, "GET", "/v2/regtest/m/referrers/" + d1 + "?artifactType=application/other")
        check(json.loads(r.data)["manifests"] == [] and r.getheader("OCI-Filters-Applied") == "artifactType", "filtered")
        # Deleting a tag leaves the manifest; deleting the digest removes every tag.
        check(req(s, "DELETE", "/v2/regtest/m/manifests/a").status == 202, "delete tag")
        oci_error(req(s, "GET", "/v2/regtest/m/manifests/a"), 404, "MANIFEST_UNKNOWN", "deleted tag")
        check(req(s, "GET", "/v2/regtest/m/manifests/b").status == 200, "other tags stay")
        check(req(s, "DELETE", "/v2/regtest/m/manifests/" + d1).status == 202, "delete digest")
        r = req(s, "GET", "/v2/regtest/m/tags/list")
        check(json.loads(r.data)["tags"] == [], "tags after deleting the digest: %r" % r.data)
        oci_error(req(s, "GET", "/v2/regtest/m/manifests/" + d1), 404, "MANIFEST_UNKNOWN", "deleted digest")
        oci_error(req(s, "GET", "/v2/regtest/none/tags/list"), 404, "NAME_UNKNOWN", "unknown repository")


def test_bad_input_is_refused_before_disk():
    with Server() as s:
        d, blobs = push_image(s, "regtest/bad", "ok")
        data = b"hello registry"
        wrong = digest_of(b"something else")
        r = req(s, "POST", "/v2/regtest/bad/blobs/uploads/?digest=" + wrong, body=data)
        oci_error(r, 400, "DIGEST_INVALID", "monolithic upload with the wrong digest")
        check(req(s, "HEAD", "/v2/regtest/bad/blobs/" + wrong).status == 404, "HEAD of the refused blob")
        oci_error(req(s, "GET", "/v2/regtest/bad/blobs/" + wrong), 404, "BLOB_UNKNOWN", "GET of the refused blob")
        check(not os.path.exists(blob_path(s, wrong)) and not os.path.exists(blob_path(s, digest_of(data))),
              "a refused blob was stored")
        check(upload_files(s) == [], "upload files left: %r" % upload_files(s))
        # Session upload with the wrong digest: refused, the session ends, nothing kept.
        r = req(s, "POST", "/v2/regtest/bad/blobs/uploads/")
        loc = r.getheader("Location")
        r = req(s, "PUT", loc + "?digest=" + wrong, body=data)
        oci_error(r, 400, "DIGEST_INVALID", "session upload with the wrong digest")
        oci_error(req(s, "GET", loc), 404, "BLOB_UPLOAD_UNKNOWN", "the session after a digest mismatch")
        check(not os.path.exists(blob_path(s, digest_of(data))), "a mismatched upload was stored")
        for path, code in (("/v2/%2e%2e/x/tags/list", "NAME_INVALID"), ("/v2/A/B/tags/list", "NAME_INVALID"),
                           ("/v2/a//b/tags/list", "NAME_INVALID"), ("/v2/a-/tags/list", "NAME_INVALID"),
                           ("/v2/" + "a" * 256 + "/tags/list", "NAME_INVALID")):
            oci_error(req(s, "GET", path), 400, code, path)
        oci_error(req(s, "GET", "/v2/clusters"), 404, "NAME_UNKNOWN", "a path that is no /v2/ endpoint")
        r = req(s, "GET", "/v2/../x/tags/list")
        check(r.status in (400, 404), "/v2/../x: %d" % r.status)
        body = req(s, "GET", "/v2/regtest/bad/manifests/ok").data
        oci_error(req(s, "PUT", "/v2/regtest/bad/manifests/" + "t" * 300, body=body, headers={"Content-Type": OCI_MANIFEST}),
                  400, "MANIFEST_INVALID", "a 300-character tag")
        oci_error(req(s, "PUT", "/v2/regtest/bad/manifests/-x", body=body, headers={"Content-Type": OCI_MANIFEST}),
                  400, "MANIFEST_INVALID", "a tag starting with -")
        oci_error(req(s, "GET", "/v2/regtest/bad/blobs/sha256:abc"), 400, "DIGEST_INVALID", "a short digest")
        oci_error(req(s, "PUT", "/v2/regtest/bad/manifests/sha256:" + "0" * 64, body=body,
                      headers={"Content-Type": OCI_MANIFEST}), 400, "DIGEST_INVALID", "manifest under the wrong digest")
        missing = image_manifest(blobs[0], 10, [(digest_of(b"not uploaded"), 12)])
        e = oci_error(req(s, "PUT", "/v2/regtest/bad/manifests/missing", body=missing, headers={"Content-Type": OCI_MANIFEST}),
                      400, "MANIFEST_BLOB_UNKNOWN", "a manifest with a missing layer")
        check(digest_of(b"not uploaded") in json.dumps(e), "the error names the missing blob: %r" % e)
        oci_error(req(s, "PUT", "/v2/regtest/bad/manifests/x", body=b"{not json", headers={"Content-Type": OCI_MANIFEST}),
                  400, "MANIFEST_INVALID", "a manifest that is not JSON")
        oci_error(req(s, "PUT", "/v2/regtest/bad/manifests/x", body=body, headers={"Content-Type": "application/vnd.x+json"}),
                  400, "MANIFEST_INVALID", "an unknown media type")
        # Size: 4 MiB is accepted, 5 MiB refused with 413.
        pad = 4 * 1024 * 1024 - len(body) - 200
        big = image_manifest(blobs[0], 10, [(b, 3000) for b in blobs[1:]], {"annotations": {"pad": "p" * pad}})
        check(len(big) <= 4 * 1024 * 1024, "test manifest too big: %d" % len(big))
        r = req(s, "PUT", "/v2/regtest/bad/manifests/big", body=big, headers={"Content-Type": OCI_MANIFEST})
        check(r.status == 201, "a manifest of nearly 4 MiB: %d %r" % (r.status, r.data[:200]))
        huge = image_manifest(blobs[0], 10, [], {"annotations": {"pad": "p" * (5 * 1024 * 1024)}})
        r = req(s, "PUT", "/v2/regtest/bad/manifests/huge", body=huge, headers={"Content-Type": OCI_MANIFEST})
        check(r.status == 413, "a 5 MiB manifest: %d" % r.status)
        s.assert_serving("bad registry input")


def raw_request(s, head, body=b""):
    c = socket.create_connection(("127.0.0.1", s.port), timeout=WAIT)
    ctx = s.ssl_context()
    if ctx is not None:
        c = ctx.wrap_socket(c, server_hostname="127.0.0.1")
    c.sendall(head.encode() + body)
    return c


def read_answer(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = c.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = c.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest


def wait_for(pred, what, seconds=WAIT):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise TestFailure("timed out waiting for " + what)


def test_chunked_upload_416_resume_and_cancel():
    with Server() as s:
        data = os.urandom(100000)
        r = req(s, "POST", "/v2/regtest/chunk/blobs/uploads/")
        check(r.status == 202 and r.getheader("Range") == "0-0" and r.getheader("Docker-Upload-UUID"), "start %r" % r.getheaders())
        loc = r.getheader("Location")
        r = req(s, "PATCH", loc, body=data[:10000], headers={"Content-Range": "0-9999", "Content-Type": "application/octet-stream"})
        check(r.status == 202 and r.getheader("Range") == "0-9999", "first chunk: %d %r" % (r.status, r.getheaders()))
        r = req(s, "PATCH", loc, body=data[20000:30000], headers={"Content-Range": "20000-29999"})
        oci_error(r, 416, "BLOB_UPLOAD_INVALID", "an out-of-order chunk")
        check(r.getheader("Range") == "0-9999", "416 Range %r" % r.getheader("Range"))
        for bad in ("abc", "10000", "10000-9999", "-5", "bytes x-y"):
            r = req(s, "PATCH", loc, body=data[10000:10010], headers={"Content-Range": bad})
            oci_error(r, 400, "BLOB_UPLOAD_INVALID", "malformed Content-Range %r" % bad)
        r = req(s, "PATCH", loc, body=data[10000:10010], headers={"Content-Range": "10000-10019"})
        oci_error(r, 400, "BLOB_UPLOAD_INVALID", "Content-Range and Content-Length disagree")
        # A chunk cut off by a disconnect keeps what arrived; the client resumes from Range.
        auth = basic(s.token)
        c = raw_request(s, "PATCH %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 50000\r\n"
                           "Content-Range: 10000-59999\r\n\r\n" % (loc, auth), data[10000:35000])

        def status_range():
            return req(s, "GET", loc).getheader("Range")

        wait_for(lambda: status_range() == "0-34999", "the partial chunk to land")
        c.close()
        # An empty PATCH appends nothing; it is refused (409) while the cut-off one still holds the session.
        wait_for(lambda: req(s, "PATCH", loc, body=b"").status == 202, "the cut-off request to end")
        r = req(s, "GET", loc)
        check(r.status == 204 and r.getheader("Range") == "0-34999", "status after the disconnect: %d %r" % (r.status, r.getheader("Range")))
        r = req(s, "PATCH", loc, body=data[35000:], headers={"Content-Range": "35000-99999"})
        check(r.status == 202 and r.getheader("Range") == "0-99999", "resumed chunk: %d %r" % (r.status, r.data))
        d = digest_of(data)
        r = req(s, "PUT", loc + "?digest=" + d)
        check(r.status == 201 and r.getheader("Location") == "/v2/regtest/chunk/blobs/" + d, "finish %d %r" % (r.status, r.data))
        r = req(s, "GET", "/v2/regtest/chunk/blobs/" + d)
        check(r.status == 200 and r.data == data, "the blob reads back")
        r = req(s, "GET", "/v2/regtest/chunk/blobs/" + d, headers={"Range": "bytes=100-199"})
        check(r.status == 206 and r.data == data[100:200] and r.getheader("Content-Range") == "bytes 100-199/100000", "range %d" % r.status)
        r = req(s, "GET", "/v2/regtest/chunk/blobs/" + d, headers={"Range": "bytes=200000-"})
        check(r.status == 416, "unsatisfiable range: %d" % r.status)
        r = req(s, "HEAD", "/v2/regtest/chunk/blobs/" + d)
        check(r.status == 200 and r.getheader("Content-Length") == "100000" and r.data == b"", "HEAD blob %r" % r.getheaders())
        # Cancel: the session and its file go.
        r = req(s, "POST", "/v2/regtest/chunk/blobs/uploads/")
        loc2 = r.getheader("Location")
        req(s, "PATCH", loc2, body=b"x" * 1000)
        uid = loc2.rsplit("/", 1)[1]
        check(uid in upload_files(s), "the session's file exists")
        r = req(s, "DELETE", loc2)
        check(r.status == 204, "cancel: %d" % r.status)
        oci_error(req(s, "GET", loc2), 404, "BLOB_UPLOAD_UNKNOWN", "a cancelled session")
        wait_for(lambda: uid not in upload_files(s), "the cancelled session's file to go")
        # Single POST with ?digest= and cross-repository mount.
        small = os.urandom(500)
        r = req(s, "POST", "/v2/regtest/chunk/blobs/uploads/?digest=" + digest_of(small), body=small)
        check(r.status == 201, "single POST: %d %r" % (r.status, r.data))
        r = req(s, "POST", "/v2/regtest/other/blobs/uploads/?mount=%s&from=regtest/chunk" % d)
        check(r.status == 201 and r.getheader("Docker-Content-Digest") == d, "mount: %d" % r.status)
        check(req(s, "HEAD", "/v2/regtest/other/blobs/" + d).status == 200, "mounted blob")
        r = req(s, "POST", "/v2/regtest/other/blobs/uploads/?mount=%s&from=regtest/chunk" % digest_of(b"none"))
        check(r.status == 202 and r.getheader("Location"), "a mount that cannot happen opens a session: %d" % r.status)


def test_ecr_repositories_immutability_and_lifecycle():
    with Server(args=["--registry-auto-create", "false"]) as s:
        e = {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}
        oci_error(req(s, "POST", "/v2/regtest/new/blobs/uploads/"), 404, "NAME_UNKNOWN", "push to a missing repository")
        expect_exit(cli(["repo", "create", "regtest/imm", "--immutable"], env=e), 0, "repo create --immutable")
        p = expect_exit(cli(["repo", "create", "regtest/imm"], env=e), 1, "create twice")
        check("RepositoryAlreadyExistsException" in p.stderr, p.stderr)
        p = expect_exit(cli(["repo", "create", "Bad/Name"], env=e), 1, "a bad name")
        check("InvalidParameterException" in p.stderr, p.stderr)
        d1, _ = push_image(s, "regtest/imm", "v1")
        body = req(s, "GET", "/v2/regtest/imm/manifests/v1").data
        check(req(s, "PUT", "/v2/regtest/imm/manifests/v1", body=body, headers={"Content-Type": OCI_MANIFEST}).status == 201,
              "pushing the same manifest under its tag again is fine")
        config = json.dumps({"other": 1}).encode()
        cd = push_blob(s, "regtest/imm", config)
        other = image_manifest(cd, len(config), [])
        err = oci_error(req(s, "PUT", "/v2/regtest/imm/manifests/v1", body=other, headers={"Content-Type": OCI_MANIFEST}),
                        403, "DENIED", "moving an immutable tag")
        check("immutable" in err["message"], err["message"])
        r = json.loads(expect_exit(cli(["repo", "describe", "regtest/imm", "--json"], env=e), 0, "describe").stdout)
        check(r["imageTagMutability"] == "IMMUTABLE" and r["repositoryArn"].endswith(":repository/regtest/imm")
              and r["repositoryUri"] == "127.0.0.1:%d/regtest/imm" % s.port, "%r" % r)
        p = expect_exit(cli(["repo", "rm", "regtest/imm"], env=e), 1, "rm with images")
        check("RepositoryNotEmptyException" in p.stderr, p.stderr)
        # Lifecycle: keep the newest 2 images tagged rel-*, expire untagged ones.
        expect_exit(cli(["repo", "create", "regtest/life"], env=e), 0, "create life")
        digests = []
        for i in range(4):
            digests.append(push_image(s, "regtest/life", "rel-%d" % i, layers=1)[0])
            time.sleep(0.01)  # distinct push times order the images
        untagged, _ = push_image(s, "regtest/life", "tmp", layers=1)
        check(req(s, "DELETE", "/v2/regtest/life/manifests/tmp").status == 202, "untag")
        bad_file = os.path.join(scratch_dir("pol"), "bad.json")
        with open(bad_file, "w") as f:
            json.dump({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "countType": "imageCountMoreThan",
                                                                  "countNumber": 1}, "action": {"type": "expire"}}]}, f)
        p = expect_exit(cli(["repo", "policy", "set", "regtest/life", bad_file], env=e), 1, "invalid policy")
        check("InvalidLifecyclePolicy" in p.stderr and "tagPrefixList" in p.stderr, p.stderr)
        good = os.path.join(scratch_dir("pol"), "good.json")
        with open(good, "w") as f:
            json.dump({"rules": [
                {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["rel-"],
                                                  "countType": "imageCountMoreThan", "countNumber": 2}, "action": {"type": "expire"}},
                {"rulePriority": 2, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                                  "countNumber": 1}, "action": {"type": "expire"}},
                {"rulePriority": 3, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100},
                 "action": {"type": "expire"}}]}, f)
        expect_exit(cli(["repo", "policy", "set", "regtest/life", good], env=e), 0, "set policy")
        got = json.loads(expect_exit(cli(["repo", "policy", "get", "regtest/life", "--json"], env=e), 0, "get").stdout)
        check(json.loads(got["lifecyclePolicyText"])["rules"][0]["rulePriority"] == 1, "%r" % got)
        prev = json.loads(expect_exit(cli(["repo", "policy", "preview", "regtest/life", "--json"], env=e), 0, "preview").stdout)
        expired = sorted(x["imageDigest"] for x in prev["previewResults"])
        check(expired == sorted(digests[:2]), "preview %r, want the two oldest rel- images" % prev)
        check(all(x["appliedRulePriority"] == 1 for x in prev["previewResults"]), "%r" % prev)
        check(req(s, "GET", "/v2/regtest/life/manifests/" + untagged).status == 200, "the fresh untagged image stays")
        check(s.request("POST", "/v1/registry/lifecycle").status == 202, "apply policies now")
        wait_for(lambda: len(json.loads(s.request("GET", "/v1/repositories/regtest%2Flife/images").body)["imageDetails"]) == 3,
                 "the policy to expire two images")
        for d in digests[:2]:
            oci_error(req(s, "GET", "/v2/regtest/life/manifests/" + d), 404, "MANIFEST_UNKNOWN", "expired image")
        # image rm by tag and by digest; repo rm --force.
        expect_exit(cli(["image", "rm", "regtest/life:rel-3"], env=e), 0, "image rm by tag")
        expect_exit(cli(["image", "rm", "regtest/life@" + digests[2]], env=e), 0, "image rm by digest")
        oci_error(req(s, "GET", "/v2/regtest/life/manifests/" + digests[2]), 404, "MANIFEST_UNKNOWN", "removed image")
        expect_exit(cli(["repo", "rm", "regtest/imm", "--force"], env=e), 0, "rm --force")
        oci_error(req(s, "GET", "/v2/regtest/imm/tags/list"), 404, "NAME_UNKNOWN", "a deleted repository")
        ls = json.loads(expect_exit(cli(["repo", "ls", "--json"], env=e), 0, "ls").stdout)
        check([r["repositoryName"] for r in ls["repositories"]] == ["regtest/life"], "%r" % ls)


def test_concurrent_pushes_of_one_layer():
    with Server() as s:
        data = os.urandom(2 * 1024 * 1024)
        d = digest_of(data)
        results = []

        def push(repo):
            try:
                r = req(s, "POST", "/v2/%s/blobs/uploads/" % repo)
                loc = r.getheader("Location")
                for off in range(0, len(data), 256 * 1024):
                    piece = data[off:off + 256 * 1024]
                    r = req(s, "PATCH", loc, body=piece, headers={"Content-Range": "%d-%d" % (off, off + len(piece) - 1)})
                    if r.status != 202:
                        results.append(("patch", r.status))
                        return
                r = req(s, "PUT", loc + "?digest=" + d)
                results.append(("put", r.status))
            except Exception as ex:  # noqa: BLE001 (reported below)
                results.append(("error", repr(ex)))

        threads = [threading.Thread(target=push, args=(r,)) for r in ("regtest/c1", "regtest/c2", "regtest/c1")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 2)
        check(sorted(results) == [("put", 201)] * 3, "concurrent pushes: %r" % results)
        check(all_blob_files(s) == [d], "one copy of the blob: %r" % all_blob_files(s))
        for repo in ("regtest/c1", "regtest/c2"):
            r = req(s, "GET", "/v2/%s/blobs/%s" % (repo, d))
            check(r.status == 200 and r.data == data, "read back from %s" % repo)


@timeout(60)
def test_kill9_mid_upload_then_resume():
    s = Server()
    try:
        data = os.urandom(300000)
        d_img, blobs = push_image(s, "regtest/crash", "acked")
        r = req(s, "POST", "/v2/regtest/crash/blobs/uploads/")
        loc = r.getheader("Location")
        r = req(s, "PATCH", loc, body=data[:120000], headers={"Content-Range": "0-119999"})
        check(r.status == 202, "first chunk")
        c = raw_request(s, "PATCH %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 180000\r\n\r\n"
                        % (loc, basic(s.token)), data[120000:200000])
        wait_for(lambda: req(s, "GET", loc).getheader("Range") == "0-199999", "the partial chunk")
        s.kill()
        c.close()
        s.start()
        # Everything acknowledged before the crash is there.
        r = req(s, "GET", "/v2/regtest/crash/manifests/acked")
        check(r.status == 200 and r.getheader("Docker-Content-Digest") == d_img, "acked manifest after kill -9")
        for b in blobs:
            check(req(s, "HEAD", "/v2/regtest/crash/blobs/" + b).status == 200, "acked blob after kill -9")
        r = req(s, "GET", loc)
        check(r.status == 204, "the session survives: %d" % r.status)
        have = int(r.getheader("Range").split("-")[1]) + 1
        check(120000 <= have <= 200000, "resume point %d" % have)
        r = req(s, "PATCH", loc, body=data[have:], headers={"Content-Range": "%d-%d" % (have, len(data) - 1)})
        check(r.status == 202, "resumed chunk: %d %r" % (r.status, r.data))
        r = req(s, "PUT", loc + "?digest=" + digest_of(data))
        check(r.status == 201, "finish after restart: %d %r" % (r.status, r.data))
        check(req(s, "GET", "/v2/regtest/crash/blobs/" + digest_of(data)).data == data, "the blob is whole")
        s.stop()
    finally:
        s.kill()


@timeout(120)
def test_online_gc_keeps_everything_in_use():
    with Server() as s:
        old_img, old_blobs = push_image(s, "regtest/gc", "old", layers=3)
        keep_img, keep_blobs = push_image(s, "regtest/gc", "keep", layers=2)
        check(req(s, "DELETE", "/v2/regtest/gc/manifests/" + old_img).status == 202, "delete old")
        orphan = push_blob(s, "regtest/gc", os.urandom(1000))  # uploaded, not yet referenced
        # Age everything: only the grace period of fresh blobs is taken away.
        past = time.time() - 3 * 3600
        for b in old_blobs + keep_blobs:
            os.utime(blob_path(s, b), (past, past))
        e = {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}
        dry = json.loads(expect_exit(cli(["registry", "gc", "--dry-run", "--json"], env=e), 0, "gc dry run").stdout)
        check(sorted(dry["removedBlobs"]) == sorted(old_blobs), "dry run %r, want %r" % (dry, old_blobs))
        check(all(os.path.exists(blob_path(s, b)) for b in old_blobs), "a dry run removed something")
        # Collect over and over while pushes run; nothing they upload may go.
        stop = threading.Event()
        pushed, errors = [], []

        def pusher():
            i = 0
            while not stop.is_set() and i < 15:
                try:
                    pushed.append(push_image(s, "regtest/gc", "p%d" % i, layers=2))
                except Exception as ex:  # noqa: BLE001 (reported below)
                    errors.append(repr(ex))
                    return
                i += 1

        t = threading.Thread(target=pusher)
        t.start()
        runs = 0
        while t.is_alive():
            r = s.request("POST", "/v1/registry/gc")
            check(r.status == 200, "gc: %d" % r.status)
            runs += 1
        t.join()
        stop.set()
        check(not errors and len(pushed) == 15, "pushes during gc failed: %r" % errors)
        check(runs > 1, "gc ran %d times" % runs)
        for img, blobs in pushed + [(keep_img, keep_blobs)]:
            check(req(s, "GET", "/v2/regtest/gc/manifests/" + img).status == 200, "manifest %s" % img)
            for b in blobs:
                check(os.path.exists(blob_path(s, b)), "blob %s of %s was collected" % (b, img))
        check(os.path.exists(blob_path(s, orphan)), "a fresh unreferenced blob was collected")
        check(not any(os.path.exists(blob_path(s, b)) for b in old_blobs), "unreferenced old blobs remain")


@timeout(60)
def test_abandoned_upload_sessions_expire():
    with Server(args=["--registry-upload-expiry", "1s"]) as s:
        r = req(s, "POST", "/v2/regtest/exp/blobs/uploads/")
        loc = r.getheader("Location")
        req(s, "PATCH", loc, body=b"y" * 5000)
        uid = loc.rsplit("/", 1)[1]
        check(uid in upload_files(s), "the session's file")
        wait_for(lambda: req(s, "GET", loc).status == 404, "the session to expire")
        wait_for(lambda: uid not in upload_files(s), "the expired session's file to go")


@timeout(90)
def test_full_disk_gives_a_clear_5xx_and_no_partial_blob():
    # The data directory on a 32 MiB tmpfs (the raft log keeps three 4 MiB
    # segments made ahead): a 40 MiB layer cannot fit.
    mnt = scratch_dir("fulldisk")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mnt], capture_output=True, text=True)
    check(r.returncode == 0, "mount tmpfs: %s" % r.stderr)
    try:
        s = Server(data_dir=os.path.join(mnt, "data"))
        try:
            big = os.urandom(40 << 20)
            r = req(s, "POST", "/v2/full/app/blobs/uploads/")
            check(r.status == 202, "start upload: %d %r" % (r.status, r.data[:200]))
            loc = r.getheader("Location")
            d = digest_of(big)
            r = req(s, "PUT", loc + "?digest=" + d, body=big, headers={"Content-Type": "application/octet-stream"})
            check(500 <= r.status < 600, "a push that cannot fit: status %d %r" % (r.status, r.data[:300]))
            err = json.loads(r.data)["errors"][0]
            check("disk is full" in err["message"], "the error does not say the disk is full: %r" % err)
            check(not os.path.exists(blob_path(s, d)), "a partial blob is visible under its digest")
            r = req(s, "HEAD", "/v2/full/app/blobs/" + d)
            check(r.status == 404, "HEAD of the failed blob: %d" % r.status)
            # Space back (the failed upload's bytes are gone): small pushes work.
            small = push_blob(s, "full/app", b"fits in what is left")
            r = req(s, "GET", "/v2/full/app/blobs/" + small)
            check(r.status == 200 and r.data == b"fits in what is left", "the small blob: %d" % r.status)
        finally:
            s.stop()
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)


@timeout(60)
def test_a_blob_is_read_only_through_a_repository_that_holds_it():
    with Server() as s:
        e = {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token, "BERTH_CA_FILE": s.ca_file}
        _, blobs = push_image(s, "team/private", "v1")
        layer = blobs[1]
        unreferenced = push_blob(s, "team/private", os.urandom(500))  # pushed, in no manifest yet
        expect_exit(cli(["repo", "create", "public/open"], env=e), 0, "repo create")
        expect_exit(cli(["repo", "update", "public/open", "--anonymous-pull", "true"], env=e), 0, "repo update")
        push_image(s, "public/open", "v1")

        def readable(repo, digest, token="admin"):
            for method in ("GET", "HEAD"):
                r = req(s, method, "/v2/%s/blobs/%s" % (repo, digest), token=token)
                if r.status != 200:
                    if method == "GET":
                        oci_error(r, 404, "BLOB_UNKNOWN", "%s through %s" % (digest, repo))
                    return False
            return True

        check(readable("team/private", layer) and readable("team/private", unreferenced), "the owner reads its blobs")
        # Knowing the digest is no right to it: not anonymously through a public
        # repository, nor with any credentials through one that does not hold it.
        check(not readable("public/open", layer, token=None), "a private layer read anonymously through public/open")
        check(not readable("public/open", layer), "a private layer read through public/open")
        check(not readable("public/open", unreferenced), "an unreferenced private blob read through public/open")
        # A manifest cannot claim it into another repository either.
        body = image_manifest(layer, 3000, [(layer, 3000)])
        r = req(s, "PUT", "/v2/public/open/manifests/stolen", body=body, headers={"Content-Type": OCI_MANIFEST})
        err = oci_error(r, 400, "MANIFEST_BLOB_UNKNOWN", "a manifest of a blob never pushed here")
        check("not pushed to repository public/open" in err["message"], err["message"])
        check(not readable("public/open", layer, token=None), "read after a refused manifest")
        # Mounting needs a source that holds it: otherwise a new session (202), as the spec allows.
        r = req(s, "POST", "/v2/public/open/blobs/uploads/?mount=%s&from=public/open" % layer)
        check(r.status == 202, "mount from a repository without the blob: %d %r" % (r.status, r.data[:200]))
        r = req(s, "POST", "/v2/public/open/blobs/uploads/?mount=%s&from=team/private" % layer)
        check(r.status == 201, "mount by a caller who may pull the source: %d %r" % (r.status, r.data[:200]))
        check(readable("public/open", layer, token=None), "the mounted blob, read through its new repository")
        # The right survives a restart; nothing else was opened.
        s.stop()
        s.start()
        check(readable("public/open", layer, token=None) and not readable("public/open", unreferenced),
              "after a restart")
