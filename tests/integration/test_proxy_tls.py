"""`berth proxy` terminating TLS: HTTPS listeners in front of python HTTP backends
(checked with real curl and openssl s_client), SNI between two certificates, the
redirect to https, a refused certificate on SIGHUP, a TLS listener splicing to a
TCP echo server, and the handshake bound. Certificates come from the openssl CLI."""

import http.client
import os
import socket
import ssl
import subprocess
import time

from harness import WAIT, check, closed_port, scratch_dir, timeout, wait_until
from test_proxy import Backend, Proxy, echo_server, head_server, target


# --- certificates ---


def _openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=30)
    check(p.returncode == 0, "openssl %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))


class Certs:
    """A test CA (ca.pem) and leaf certificates it signs, P-256 keys, in a scratch dir."""

    def __init__(self):
        self.dir = scratch_dir("certs")
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=self.dir)
        _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=berth test CA", "-days", "2",
                 "-out", "ca.pem", cwd=self.dir)
        self.ca = os.path.join(self.dir, "ca.pem")

    def leaf(self, name, cn, dns):
        """Issues `name`.pem/.key for CN `cn` with DNS subjectAltNames `dns`; returns (cert PEM, key PEM)."""
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key", cwd=self.dir)
        _openssl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + cn, "-out", name + ".csr", cwd=self.dir)
        with open(os.path.join(self.dir, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n" % ",".join("DNS:" + d for d in dns) if dns else "")
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem", cwd=self.dir)
        with open(os.path.join(self.dir, name + ".pem")) as c, open(os.path.join(self.dir, name + ".key")) as k:
            return c.read(), k.read()


def cert_entry(name, pair):
    return {"name": name, "certPem": pair[0], "keyPem": pair[1]}


def https_config(port, certs, listener_certs, groups, version=1, protocol="HTTPS", extra_listeners=None):
    listeners = [{"port": port, "protocol": protocol, "address": "127.0.0.1", "defaultTargetGroup": "web",
                  "certificates": listener_certs}] + (extra_listeners or [])
    tgs = [{"name": n, "protocol": "TCP" if protocol == "TLS" else "HTTP", "targets": t} for n, t in groups.items()]
    return {"version": version, "certificates": certs, "listeners": listeners, "targetGroups": tgs}


def curl_https(ca, name, port, paths=("/",), extra=()):
    """curl over TLS to `name` resolved to 127.0.0.1, verifying against `ca`; returns (stdout, stderr)."""
    args = ["curl", "-sS", "--max-time", "20", "--resolve", "%s:%d:127.0.0.1" % (name, port), "--cacert", ca,
            "-v"] + list(extra) + ["https://%s:%d%s" % (name, port, p) for p in paths]
    p = subprocess.run(args, capture_output=True, timeout=WAIT + 10)
    check(p.returncode == 0, "curl failed (%d): %s" % (p.returncode, p.stderr.decode(errors="replace")[-1500:]))
    return p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def served_subject(port, servername=None):
    """The subject of the certificate berth presents, as openssl s_client prints it."""
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_2"]
    if servername:
        args += ["-servername", servername]
    else:
        args += ["-noservername"]
    p = subprocess.run(args, input=b"", capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    for line in out.splitlines():
        if line.startswith("subject="):
            return line[len("subject="):].replace(" ", "")
    raise AssertionError("no certificate from s_client: %s %s" % (out[-800:], p.stderr.decode(errors="replace")))


def mirror_server():
    """An HTTP server on 127.0.0.1 that answers each request with its own request head
    as the body (one request per connection); returns its port."""
    return head_server(lambda c, head: c.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(head), head)))


# --- tests ---


@timeout(90)
def test_proxy_tls_https_listener_forwards_to_http_backends():
    certs = Certs()
    site = certs.leaf("site", "site.test", ["site.test"])
    web = Backend("web")
    port = closed_port()
    with Proxy(https_config(port, [cert_entry("site", site)], ["site"], {"web": [target("w", web.port)]})):
        # Two requests on one kept-alive TLS connection; the backend sees the port and https.
        out, err = curl_https(certs.ca, "site.test", port, paths=("/a", "/b?x=1"),
                              extra=["-H", "X-Forwarded-Proto: forged", "-D", "-"])
        check("web /a\n" in out and "web /b?x=1\n" in out, "both answers through TLS: %r" % out)
        check("SSL certificate verify ok" in err, "curl should verify the chain: %s" % err[-800:])
        check("TLSv1.2" in err, "TLS 1.2 is what berth speaks: %s" % err[-800:])
        check(err.count("Re-using existing connection") + err.count("Reusing existing") >= 1,
              "the second request should reuse the TLS connection: %s" % err[-1500:])
        check(("x-seen-forwarded-port: %d" % port) in out.lower(), "X-Forwarded-Port: %r" % out)
        # The backend is told the client spoke https (the client's own header is replaced).
        p = subprocess.run(["curl", "-sS", "--resolve", "site.test:%d:127.0.0.1" % port, "--cacert", certs.ca,
                            "-X", "POST", "--data-binary", "hello", "https://site.test:%d/post" % port],
                           capture_output=True, timeout=30)
        check(p.returncode == 0 and p.stdout.startswith(b"web 5 "), "POST through TLS: %r %r" % (p.stdout, p.stderr))
    heads = mirror_server()
    port = closed_port()
    with Proxy(https_config(port, [cert_entry("site", site)], ["site"], {"web": [target("h", heads)]})):
        out, _ = curl_https(certs.ca, "site.test", port, paths=("/h",), extra=["-H", "X-Forwarded-Proto: forged"])
        check("X-Forwarded-Proto: https\r\n" in out and "forged" not in out,
              "the backend should be told https, and only that: %r" % out)


@timeout(90)
def test_proxy_tls_sni_picks_the_certificate():
    certs = Certs()
    a = certs.leaf("a", "a.test", ["a.test", "*.a.test"])
    b = certs.leaf("b", "b.test", ["b.test"])
    web = Backend("web")
    port = closed_port()
    config = https_config(port, [cert_entry("a", a), cert_entry("b", b)], ["a", "b"],
                          {"web": [target("w", web.port)]})
    with Proxy(config):
        check(served_subject(port, "b.test") == "CN=b.test", "SNI b.test should get b")
        check(served_subject(port, "x.a.test") == "CN=a.test", "a wildcard SAN covers x.a.test")
        check(served_subject(port, "a.test") == "CN=a.test", "SNI a.test should get a")
        check(served_subject(port, "nobody.test") == "CN=a.test", "an unknown name gets the first")
        check(served_subject(port) == "CN=a.test", "no SNI gets the first")
        out, _ = curl_https(certs.ca, "b.test", port, paths=("/sni",))
        check(out == "web /sni\n", "curl verifies b.test's certificate: %r" % out)


@timeout(60)
def test_proxy_tls_redirects_http_to_https():
    port = closed_port()
    other = closed_port()
    config = {"version": 1, "listeners": [
        {"port": port, "protocol": "HTTP", "address": "127.0.0.1", "redirectToHttps": {"port": 8443}},
        {"port": other, "protocol": "HTTP", "address": "127.0.0.1",
         "redirectToHttps": {"port": 443, "statusCode": 302}}]}
    with Proxy(config):
        p = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "-H", "Host: shop.test:%d" % port,
                            "http://127.0.0.1:%d/cart/view?item=7&x=%%2F" % port], capture_output=True, timeout=30)
        head = p.stdout.decode()
        check(head.startswith("HTTP/1.1 301 Moved Permanently"), "a 301: %r" % head)
        check("Location: https://shop.test:8443/cart/view?item=7&x=%2F\r\n" in head, "its Location: %r" % head)
        p = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "-H", "Host: shop.test",
                            "http://127.0.0.1:%d/" % other], capture_output=True, timeout=30)
        head = p.stdout.decode()
        check(head.startswith("HTTP/1.1 302 Found"), "a 302 where asked: %r" % head)
        check("Location: https://shop.test/\r\n" in head, "port 443 is left out: %r" % head)


@timeout(90)
def test_proxy_tls_refuses_a_bad_certificate_on_sighup_and_keeps_serving():
    certs = Certs()
    site = certs.leaf("site", "site.test", ["site.test"])
    renewed = certs.leaf("renewed", "renewed.site.test", ["site.test"])
    other = certs.leaf("other", "other.test", ["other.test"])
    web = Backend("web")
    port = closed_port()
    groups = {"web": [target("w", web.port)]}
    with Proxy(https_config(port, [cert_entry("site", site)], ["site"], groups)) as p:
        check(curl_https(certs.ca, "site.test", port)[0] == "web /\n", "before the reload")
        # A key that is not the certificate's: refused, naming the field.
        p.reload(https_config(port, [cert_entry("site", (site[0], other[1]))], ["site"], groups, version=2),
                 "reload refused")
        check("certificates[0].keyPem: is not the key of the certificate in certPem" in p.logs(),
              "the refusal names the field: %s" % p.logs()[-600:])
        p.reload(https_config(port, [cert_entry("site", ("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                                          "-----END CERTIFICATE-----\n", site[1]))],
                              ["site"], groups, version=3), "reload refused")
        check("certificates[0].certPem: " in p.logs(), "a bad PEM names certPem: %s" % p.logs()[-600:])
        p.reload(https_config(port, [cert_entry("site", site)], ["nope"], groups, version=4), "reload refused")
        check('listeners[0].certificates[0]: no certificate named \\"nope\\"' in p.logs(), p.logs()[-600:])
        check(curl_https(certs.ca, "site.test", port)[0] == "web /\n", "the old configuration keeps serving")
        check(served_subject(port, "site.test") == "CN=site.test", "with the old certificate")
        # A kept-alive connection from before the renewal...
        ctx = ssl.create_default_context(cafile=certs.ca)
        ctx.check_hostname = False  # to 127.0.0.1 (no SNI: the listener's first certificate); the chain is checked
        old = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
        old.request("GET", "/before", headers={"Host": "site.test"})
        check(old.getresponse().read() == b"web /before\n", "a kept-alive TLS connection")
        # ... a good new certificate serves new handshakes ...
        p.reload(https_config(port, [cert_entry("site", renewed)], ["site"], groups, version=5), "reloaded")
        wait_until(lambda: served_subject(port, "site.test") == "CN=renewed.site.test", what="the new certificate")
        check(curl_https(certs.ca, "site.test", port)[0] == "web /\n", "after the renewal")
        # ... while the connection from before carries on with its own.
        old.request("GET", "/after", headers={"Host": "site.test"})
        check(old.getresponse().read() == b"web /after\n", "the old connection keeps working")
        subject = dict(x[0] for x in old.sock.getpeercert()["subject"])
        check(subject.get("commonName") == "site.test", "with its old certificate: %r" % subject)
        old.close()


@timeout(60)
def test_proxy_tls_listener_splices_to_a_tcp_backend():
    certs = Certs()
    site = certs.leaf("site", "echo.test", ["echo.test"])
    echo = echo_server()
    port = closed_port()
    with Proxy(https_config(port, [cert_entry("site", site)], ["site"], {"web": [target("e", echo)]},
                            protocol="TLS")):
        ctx = ssl.create_default_context(cafile=certs.ca)
        for _ in range(2):  # the second may resume by ticket
            with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
                with ctx.wrap_socket(raw, server_hostname="echo.test") as s:
                    check(s.version() == "TLSv1.2", "TLS 1.2: %s" % s.version())
                    payload = os.urandom(200000)
                    s.sendall(payload)
                    got = b""
                    while len(got) < len(payload):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                    check(got == payload, "the echo came back whole (%d of %d bytes)" % (len(got), len(payload)))


@timeout(60)
def test_proxy_tls_closes_a_client_that_never_handshakes():
    certs = Certs()
    site = certs.leaf("site", "site.test", ["site.test"])
    web = Backend("web")
    port = closed_port()
    with Proxy(https_config(port, [cert_entry("site", site)], ["site"], {"web": [target("w", web.port)]})):
        silent = socket.create_connection(("127.0.0.1", port), timeout=30)
        started = time.monotonic()
        # Meanwhile another client is served: the silent one stalls nobody.
        check(curl_https(certs.ca, "site.test", port)[0] == "web /\n", "served while one client is silent")
        try:
            data = silent.recv(1)
        except ConnectionResetError:
            data = b""
        waited = time.monotonic() - started
        check(data == b"", "the silent client should be closed, got %r" % data)
        check(waited >= 8, "closed by the 10 s handshake bound, not before (after %.1f s)" % waited)
        silent.close()
