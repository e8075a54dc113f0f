"""The registry across a cluster of servers (issue 13): a push to any server is
acknowledged only once a majority of the servers hold its blobs; its manifest
goes through the log; any server serves any pull, fetching a blob it lacks from
a peer and checking its digest; garbage collection on the leader removes a blob
from every server."""

import hashlib
import os
import signal
import subprocess
import uuid

import dockerd
from harness import check, expect_status, timeout, wait_until
from test_cluster import three_servers
from test_registry import OCI_MANIFEST, blob_path, build_image, docker, docker_env, push_blob, push_image, req


def holders(servers, digest):
    return [s for s in servers if os.path.exists(blob_path(s, digest))]


def stop_all(servers):
    for s in servers:
        if s.alive():
            s.kill()


@timeout(300)
def test_a_push_to_a_follower_is_on_a_majority_and_every_server_serves_it():
    servers = three_servers()
    leader, f1, f2 = servers
    try:
        repo = "team/app-" + uuid.uuid4().hex[:8]
        digest, blobs = push_image(f1, repo, "1", layers=3)
        for b in blobs:
            have = holders(servers, b)
            check(len(have) >= 2, "blob %s is on %d server(s) after its push was acknowledged" % (b, len(have)))
        # The same bytes pushed again through the other follower: its peers hold
        # them already (their HEAD answers 200) and the push is acknowledged.
        data = os.urandom(5000)
        d = push_blob(f1, repo, data)
        wait_until(lambda: len(holders(servers, d)) == 3, what="the background copies of %s" % d)
        check(push_blob(f2, repo, data) == d, "the second push of %s" % d)
        # The manifest is in the log: every server answers it.
        for s in servers:
            wait_until(lambda: req(s, "GET", "/v2/%s/manifests/1" % repo).status == 200, what="the manifest on %s" % s.url)
            r = req(s, "GET", "/v2/%s/manifests/1" % repo, headers={"Accept": OCI_MANIFEST})
            check(r.getheader("Docker-Content-Digest") == digest, "digest on %s: %r" % (s.url, r.getheader("Docker-Content-Digest")))
        # A server without a blob fetches it from a peer: take f2's copies away.
        for b in blobs:
            if os.path.exists(blob_path(f2, b)):
                os.remove(blob_path(f2, b))
        for b in blobs:
            r = req(f2, "GET", "/v2/%s/blobs/%s" % (repo, b))
            check(r.status == 200, "GET %s on a server without it: %d %r" % (b, r.status, r.data[:200]))
            check("sha256:" + hashlib.sha256(r.data).hexdigest() == b, "the bytes served for %s" % b)
            check(os.path.exists(blob_path(f2, b)), "the fetched blob %s is kept" % b)
        # The server that took the push dies: the others still hold every blob.
        f1.signal(signal.SIGKILL)
        f1.wait_exit()
        for b in blobs:
            check(holders([leader, f2], b), "blob %s went with the server that took the push" % b)
            r = req(f2, "GET", "/v2/%s/blobs/%s" % (repo, b))
            check(r.status == 200 and "sha256:" + hashlib.sha256(r.data).hexdigest() == b, "GET %s after the kill" % b)
    finally:
        stop_all(servers)


@timeout(300)
def test_a_peer_copy_that_does_not_match_its_digest_is_not_served():
    servers = three_servers()
    leader, f1, f2 = servers
    try:
        repo = "rot/app"
        _, blobs = push_image(f1, repo, "1", layers=1)
        layer = blobs[-1]
        # Only a corrupt copy is left within reach of f2.
        for s in (leader, f1):
            if os.path.exists(blob_path(s, layer)):
                with open(blob_path(s, layer), "r+b") as f:
                    f.write(b"X")
        if os.path.exists(blob_path(f2, layer)):
            os.remove(blob_path(f2, layer))
        r = req(f2, "GET", "/v2/%s/blobs/%s" % (repo, layer))
        check(r.status == 404, "a blob whose only copies are corrupt was served: %d" % r.status)
        check(b"hash to" in r.data, "the refusal names the digest mismatch: %r" % r.data[:300])
        check(not os.path.exists(blob_path(f2, layer)), "a corrupt copy was kept")
    finally:
        stop_all(servers)


@timeout(300)
def test_garbage_collection_on_the_leader_removes_a_blob_from_every_server():
    servers = three_servers(["--registry-gc-grace", "0s"])
    leader, f1, f2 = servers
    try:
        repo = "gc/app"
        digest, blobs = push_image(f1, repo, "1", layers=2)
        keep_digest, keep = push_image(f2, repo, "2", layers=1)
        # Every server holds every blob (the pull through each copies the rest).
        for s in servers:
            for b in blobs + keep:
                wait_until(lambda: req(s, "GET", "/v2/%s/blobs/%s" % (repo, b)).status == 200, what="blob on %s" % s.url)
        r = req(f1, "DELETE", "/v2/%s/manifests/%s" % (repo, digest))
        check(r.status == 202, "delete through a follower: %d %r" % (r.status, r.data[:200]))
        wait_until(lambda: req(leader, "GET", "/v2/%s/manifests/%s" % (repo, digest)).status == 404, what="the delete applied")
        # Only the leader collects; a follower's gate sends the admin route to it.
        expect_status(leader.request("POST", "/v1/registry/gc"), 200, "gc on the leader")
        gone = [b for b in blobs if b not in keep]
        for s in servers:
            wait_until(lambda: not any(os.path.exists(blob_path(s, b)) for b in gone),
                       what="the collected blobs gone from %s" % s.url)
            for b in keep:
                check(os.path.exists(blob_path(s, b)), "blob %s of a kept image removed from %s" % (b, s.url))
    finally:
        stop_all(servers)


@timeout(420)
def test_docker_pushes_to_a_follower_and_pulls_from_another_after_the_first_dies():
    dockerd.ensure_docker()
    servers = three_servers()
    leader, f1, f2 = servers
    env = docker_env()
    ref = None
    try:
        push_host = "127.0.0.1:%d" % f1.port
        pull_host = "127.0.0.1:%d" % f2.port
        for host in (push_host, pull_host):
            p = subprocess.run(["docker", "login", host, "-u", "x", "--password-stdin"], input=leader.token + "\n",
                               capture_output=True, text=True, env=env, timeout=120)
            check(p.returncode == 0, "login to %s: %s %s" % (host, p.stdout, p.stderr))
        name = "ha/app-%s" % uuid.uuid4().hex[:8]
        ref = "%s/%s:1" % (push_host, name)
        build_image(env, ref)
        docker(["push", ref], env)
        f1.signal(signal.SIGKILL)
        f1.wait_exit()
        other = "%s/%s:1" % (pull_host, name)
        docker(["rmi", ref], env)
        docker(["pull", other], env)
        got = docker(["run", "--rm", other, "sh", "-c", "cat /data0 /data1 /data2 | wc -c"], env).stdout.strip()
        check(got == str(3 * 64 * 1024), "the image pulled from another server: %r" % got)
        docker(["rmi", other], env)
    finally:
        if ref:
            docker(["rmi", "-f", ref], env, check_ok=False)
        stop_all(servers)
