"""A real Docker engine for the integration tests, and the test image.

`ensure_docker()` runs packaging/ensure-docker.sh when no daemon answers: it
installs Debian's docker.io if missing and starts containerd and dockerd.
`test_image()` builds `berth-test/busybox:1` with `docker import` from a
root filesystem made of Debian's busybox-static (no image can be pulled from
outside here). Both are idempotent and safe to call from parallel test processes
(a lock file serialises them).

Tests share one engine. A test process that uses it holds a shared lock on it
from its first ensure_docker() until it exits; a test that must restart the
engine takes it exclusively (`exclusive_engine()`), so it waits for the others
and they wait for it, whatever `-j` the runner was given.

Nothing here asserts anything about speed; waits are generous upper bounds.
"""

import fcntl
import os
import shutil
import subprocess
import tempfile
import time

SOCKET = "/var/run/docker.sock"
IMAGE = "berth-test/busybox:1"
_LOCK = "/tmp/berth-it-docker.lock"
_ENGINE_LOCK = "/tmp/berth-it-docker-engine.lock"
# A failed start is remembered for a few minutes, so the tests after the first
# fail at once with its message instead of each waiting for the engine again.
_FAILED = "/tmp/berth-it-docker.failed"
_FAILED_FOR = 300
_engine_hold = None  # this process's lock on the engine, held until it exits


def _run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _daemon_answers():
    if not shutil.which("docker"):
        return False
    return _run(["docker", "info", "--format", "{{.ServerVersion}}"]).returncode == 0


class _Locked:
    def __enter__(self):
        self.f = open(_LOCK, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _hold_engine(mode):
    global _engine_hold
    if _engine_hold is None:
        _engine_hold = open(_ENGINE_LOCK, "w")
        fcntl.flock(_engine_hold, mode)


def exclusive_engine():
    """Waits until no other test process uses the engine, and keeps it to this
    one until it exits (for a test that restarts dockerd)."""
    _hold_engine(fcntl.LOCK_EX)


def ensure_docker(hold=True):
    """Makes sure a Docker daemon answers on /var/run/docker.sock (through
    packaging/ensure-docker.sh, the same script `make run` uses). `hold`: this
    process uses the engine from now on (a shared lock, see above)."""
    if hold:
        _hold_engine(fcntl.LOCK_SH)
    if _daemon_answers():
        return
    with _Locked():
        if _daemon_answers():
            return
        try:
            if time.time() - os.path.getmtime(_FAILED) < _FAILED_FOR:
                with open(_FAILED) as f:
                    raise RuntimeError("no Docker engine (an earlier start failed): " + f.read())
        except FileNotFoundError:
            pass
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "packaging", "ensure-docker.sh")
        r = _run(["sh", script])
        if r.returncode != 0 or not _daemon_answers():
            message = (r.stderr or r.stdout)[-500:]
            with open(_FAILED, "w") as f:
                f.write(message)
            raise RuntimeError("no Docker engine: " + message)
        if os.path.exists(_FAILED):
            os.unlink(_FAILED)


def _image_present():
    return _run(["docker", "image", "inspect", IMAGE]).returncode == 0


def test_image(hold=True):
    """The name of a busybox image present in the local engine."""
    ensure_docker(hold)
    if _image_present():
        return IMAGE
    with _Locked():
        if _image_present():
            return IMAGE
        busybox = "/bin/busybox"
        if not os.path.exists(busybox) or "static" not in _run(["file", "-b", busybox]).stdout:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            r = _run(["apt-get", "install", "-y", "-qq", "busybox-static"], env=env)
            if r.returncode != 0:
                raise RuntimeError("apt-get install busybox-static failed: " + r.stderr[-500:])
        root = tempfile.mkdtemp(prefix="berth-rootfs-")
        try:
            for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "var/www", "root"):
                os.makedirs(os.path.join(root, d), exist_ok=True)
            os.chmod(os.path.join(root, "tmp"), 0o1777)
            shutil.copy2(busybox, os.path.join(root, "bin/busybox"))
            applets = _run([busybox, "--list"]).stdout.split()
            for a in applets:
                p = os.path.join(root, "bin", a)
                if a != "busybox" and not os.path.exists(p):
                    os.symlink("busybox", p)
            with open(os.path.join(root, "etc/passwd"), "w") as f:
                f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
            with open(os.path.join(root, "etc/group"), "w") as f:
                f.write("root:x:0:\nnogroup:x:65534:\n")
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            r = subprocess.run(["docker", "import", "-c", 'CMD ["/bin/sh"]', "-c", "ENV PATH=/bin", "-",
                                IMAGE], stdin=tar.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
            tar.wait()
            if r.returncode != 0:
                raise RuntimeError("docker import failed: " + r.stderr[-500:])
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return IMAGE


def remove_berth_containers():
    """Removes every container and network berth made (labels berth.task), so a
    test starts from an engine with none."""
    ids = _run(["docker", "ps", "-aq", "--filter", "label=berth.task"]).stdout.split()
    if ids:
        _run(["docker", "rm", "-f"] + ids)
    nets = _run(["docker", "network", "ls", "-q", "--filter", "label=berth.task"]).stdout.split()
    if nets:
        _run(["docker", "network", "rm"] + nets)


if __name__ == "__main__":
    print(test_image(hold=False))
