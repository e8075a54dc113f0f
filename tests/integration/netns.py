"""Hosts for the integration tests: network namespaces on a bridge of the test's
own, so servers reach one another at real addresses and a test can cut one off
with iptables in its namespace alone, while the test (in the root namespace)
still reaches every one of them.

    with Network(3) as net:
        s = net.server(0, args=[...])  # berth server in host 0's namespace, on net.address(0):7070
        net.cut(0, [1, 2])             # host 0 neither hears from nor sends to hosts 1 and 2
        net.heal(0)

Network k (1 to 254) is 10.214.k.0/24: its bridge bthbrK holds 10.214.k.1 in the
root namespace, host i is 10.214.k.(11+i) in the namespace bthKhI, joined to the
bridge by the veth pair bthKvI (root side) / bthKnI. Only these addresses are
ever targeted. (test_tls.py takes 10.213.x.0/30 for its one namespace.)

The bridge's name is the lock: `ip link add` fails while another test holds k.
Its alias names the owner's pid; a network whose test was killed (the runner's
timeout is a SIGKILL, no `finally` runs) is taken down by the next test that
comes across it. With br_netfilter loaded, frames crossing a bridge pass the
root namespace's FORWARD chain (policy DROP where Docker runs), so one rule
there lets this bridge's own traffic through; it goes with the bridge.
"""

import os
import subprocess

from harness import Server, TestFailure

OWNER = "berth-it pid="
PORT = 7070


def sh(*args, ns=None, check_rc=True):
    """Runs a command (in namespace `ns` if given); returns CompletedProcess,
    raising TestFailure when it fails and `check_rc`."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check_rc and r.returncode != 0:
        raise TestFailure("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


def _bridge(k):
    return "bthbr%d" % k


def _forward_rule(k):
    br = _bridge(k)
    return ["FORWARD", "-i", br, "-o", br, "-j", "ACCEPT", "-m", "comment", "--comment", "berth-it " + br]


def _teardown(k, hosts):
    """Removes network k's namespaces, bridge and FORWARD rule, whatever of them
    exists (the veths go with the namespaces). Processes still in a namespace keep
    it alive unnamed: the caller ends them first."""
    for i in range(hosts):
        sh("ip", "netns", "del", "bth%dh%d" % (k, i), check_rc=False)
        sh("ip", "link", "del", "bth%dv%d" % (k, i), check_rc=False)
    while sh("iptables", "-D", *_forward_rule(k), check_rc=False).returncode == 0:
        pass
    sh("ip", "link", "del", _bridge(k), check_rc=False)


def _owner_gone(k):
    """True if bridge k exists and the test whose pid its alias names has ended."""
    r = sh("ip", "-o", "link", "show", _bridge(k), check_rc=False)
    if r.returncode != 0 or OWNER not in r.stdout:
        return False  # no bridge, or one not ours (or its alias not yet set)
    pid = r.stdout.split(OWNER, 1)[1].split()[0]
    return pid.isdigit() and not os.path.exists("/proc/" + pid)


class Network:
    """`hosts` network namespaces on a bridge of their own (see the module's text).
    Best as a context manager; `close()` takes it all down."""

    MAX_HOSTS = 9

    def __init__(self, hosts=3):
        assert 0 < hosts <= self.MAX_HOSTS
        self.hosts = hosts
        self.k = None
        self._cuts = {}  # host -> [iptables rule args] added by cut()
        for k in range(1, 255):
            if _owner_gone(k):
                _teardown(k, self.MAX_HOSTS)
            if sh("ip", "link", "add", _bridge(k), "type", "bridge", check_rc=False).returncode == 0:
                self.k = k
                break
        if self.k is None:
            raise TestFailure("no free network 10.214.k.0/24 (every bridge bthbr1..254 exists)")
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        k, br = self.k, _bridge(self.k)
        sh("ip", "link", "set", br, "alias", OWNER + str(os.getpid()))
        sh("ip", "addr", "add", "10.214.%d.1/24" % k, "dev", br)
        sh("ip", "link", "set", br, "up")
        sh("iptables", "-I", *_forward_rule(k))
        for i in range(self.hosts):
            ns, outer, inner = self.ns(i), "bth%dv%d" % (k, i), "bth%dn%d" % (k, i)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "link", "set", outer, "master", br)
            sh("ip", "link", "set", outer, "up")
            sh("ip", "addr", "add", self.address(i) + "/24", "dev", inner, ns=ns)
            sh("ip", "link", "set", inner, "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)

    def ns(self, i):
        return "bth%dh%d" % (self.k, i)

    def address(self, i):
        return "10.214.%d.%d" % (self.k, 11 + i)

    def server(self, i, args=(), data_dir=None, start=True):
        """A Server (harness) in host i's namespace listening on its address, port
        7070 as on a host of its own."""
        s = Server(data_dir=data_dir, host=self.address(i), wrapper=["ip", "netns", "exec", self.ns(i)], args=args,
                   start=False)
        s.port = PORT
        if start:
            s.start()
        return s

    def host_of(self, server):
        """The host index a Server of this network runs on."""
        return [i for i in range(self.hosts) if self.address(i) == server.host][0]

    def cut(self, i, peers):
        """Host i neither receives from nor sends to hosts `peers` (DROP in its
        namespace, both ways; its own connections stall, nothing is reset). The
        root namespace, where the test runs, still reaches it."""
        rules = self._cuts.setdefault(i, [])
        for p in peers:
            for rule in (["INPUT", "-s", self.address(p), "-j", "DROP"],
                         ["OUTPUT", "-d", self.address(p), "-j", "DROP"]):
                sh("iptables", "-A", *rule, ns=self.ns(i))
                rules.append(rule)

    def heal(self, i):
        """Removes every rule cut() put in host i's namespace."""
        for rule in self._cuts.pop(i, []):
            sh("iptables", "-D", *rule, ns=self.ns(i))

    def close(self):
        if self.k is not None:
            _teardown(self.k, self.hosts)
            self.k = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
