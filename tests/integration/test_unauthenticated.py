"""Unauthenticated traffic is bounded (docs/api.md, "Limits on every connection"):
connections not yet authenticated are capped per client address and cut off
soon, and failed authentications from an address are answered 429 with
Retry-After, the registry's token endpoint included, while clients that
authenticate, from other addresses, are served. Loopback is exempt unless
--limit-loopback: these tests use it, and take 127.0.0.2 and 127.0.0.3 as other
hosts (the kernel routes all of 127/8 to this machine).
"""

import base64
import http.client
import socket
import time

from harness import Agent, Server, check, expect_status, timeout, wait_until


def from_address(s, source, method, path, headers=None, body=None):
    """One HTTPS request to `s` from the local address `source`."""
    conn = http.client.HTTPSConnection(s.host, s.port, timeout=30, context=s.ssl_context(),
                                       source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


def idle_connection(s, source):
    """A TCP connection from `source` that never says anything."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(30)
    sock.connect((s.host, s.port))
    return sock


def closed_by_server(sock):
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return True


@timeout(120)
def test_idle_unauthenticated_connections_are_capped_per_address_and_cut_off_while_an_agent_connects():
    with Server(args=["--limit-loopback", "--unauthenticated-connections", "8", "--unauthenticated-timeout", "3s",
                      "--heartbeat-interval", "500ms"]) as s:
        held = [idle_connection(s, "127.0.0.2") for _ in range(8)]
        wait_until(lambda: s.metric("berth_http_open_connections") >= 8, what="the 8 idle connections accepted")
        # The ninth from that address is refused at once (after its TLS handshake).
        status, headers, body = from_address(s, "127.0.0.2", "GET", "/healthz")
        check(status == 429 and b"TooManyUnauthenticatedConnections" in body and headers.get("retry-after"),
              "the ninth connection: %d %r %r" % (status, headers, body))
        # Another address is not held back: an agent joins and keeps its stream.
        agent_token = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201).json()["token"]["secret"]
        with Agent(s, 1, agent_token):
            wait_until(lambda: any(n["agentConnected"] for n in
                                   s.request("GET", "/v1/nodes").json()["containerInstances"]),
                       wait=30, what="the agent connected")
            # The idle ones are cut off by the server (3 s, not the 60 s idle timeout).
            started = time.monotonic()
            for sock in held:
                check(closed_by_server(sock), "an idle unauthenticated connection was kept")
                sock.close()
            check(time.monotonic() - started < 25, "the idle connections were kept %.0f s" % (time.monotonic() - started))
            # Their places are free again.
            status, _, _ = from_address(s, "127.0.0.2", "GET", "/healthz")
            check(status == 200, "after the cut-off: %d" % status)
        check(s.metric("berth_http_unauthenticated_rejected_total") >= 1, "the refusal was not counted")


@timeout(90)
def test_failed_authentications_are_answered_429_per_address_token_endpoint_included():
    with Server(args=["--limit-loopback", "--auth-failures-per-minute", "5"]) as s:
        for i in range(5):
            status, _, _ = from_address(s, "127.0.0.2", "GET", "/v1/clusters", {"Authorization": "Bearer guess%d" % i})
            check(status == 401, "guess %d: %d" % (i, status))
        status, headers, body = from_address(s, "127.0.0.2", "GET", "/v1/clusters", {"Authorization": "Bearer guess"})
        check(status == 429 and b"TooManyAuthenticationFailures" in body, "the sixth guess: %d %r" % (status, body))
        check(1 <= int(headers["retry-after"]) <= 12, "Retry-After: %r" % headers.get("retry-after"))
        # The address is throttled, even with a good token; other addresses are not.
        status, _, _ = from_address(s, "127.0.0.2", "GET", "/v1/clusters", {"Authorization": "Bearer " + s.token})
        check(status == 429, "a good token from the throttled address: %d" % status)
        status, _, _ = from_address(s, "127.0.0.3", "GET", "/v1/clusters", {"Authorization": "Bearer " + s.token})
        check(status == 200, "another address: %d" % status)
        # The registry's token endpoint counts its failures the same way.
        basic = {"Authorization": "Basic " + base64.b64encode(b"u:wrong").decode()}
        statuses = [from_address(s, "127.0.0.3", "GET", "/v2/token?service=berth", basic)[0] for _ in range(6)]
        check(statuses == [401] * 5 + [429], "the token endpoint: %r" % statuses)
        # Anonymous first tries (no credentials, as docker's) are no failures.
        statuses = [from_address(s, "127.0.0.4", "GET", "/v2/")[0] for _ in range(8)]
        check(statuses == [401] * 8, "anonymous probes: %r" % statuses)
        check(s.metric("berth_http_auth_throttled_total") >= 3, "throttled requests were not counted")
