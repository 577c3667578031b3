"""The docker-compose cluster (``docker-compose.yml``) as a test fixture, with everything it needs.

``ComposeCluster.start()`` takes a machine that may have no Docker at all to a running
cluster of one head and three nodes (``node1``..``node3``), each step bounded in time:

1. ``ensure_docker()``: the docker CLI and daemon (apt package ``docker.io``) and Compose
   (``docker compose`` v2 if present, else ``docker-compose`` v1, apt package
   ``docker-compose``) are installed with apt-get when missing, as root, the way
   ``sshd_cluster.ensure_openssh`` installs OpenSSH. When no daemon answers, ``dockerd`` is
   started in the background (its own session, so it outlives the tests; log in
   ``DOCKERD_LOG``; extra flags from ``SSHRUN_DOCKERD_ARGS``).
2. ``resolve_base_image()``: ``SSHRUN_BASE_IMAGE`` when set; else ``python:3.11-slim`` or
   ``sshrun-base:bookworm`` when the machine has one; else ``docker/build-base-image.sh``
   (debootstrap from a Debian mirror; the tests never pull from an image registry).
3. ``prepare_build_inputs()``: a torch wheel is copied into ``SSHRUN_WHEELS`` (default
   ``docker/wheels``) when it holds none and ``/opt/wheels`` (or a ``PIP_FIND_LINKS``
   directory) has one; the host's CA bundle is copied to ``docker/ca/host.crt`` when
   ``docker/ca`` holds no ``*.crt`` (pip in the build needs it behind a TLS proxy).
4. ``build``: the head and node images (Docker's layer cache makes a rebuild cheap), then
   ``up -d`` under a project name unique to this run (``sshrun-test-PID-RANDOM``), so a
   user's own cluster (by default the project named after the checkout's directory) is
   never touched; ``wait_ready`` until the head reaches every
   node with OpenSSH (strict host keys, the cluster's key).

``down()`` (``down -v``: containers, network, key volume) runs when ``start`` fails after
``up`` and from the fixture's finalizer. Anything that cannot be done raises
``RuntimeError`` with the reason: the tests fail, they never skip.

Only the cluster's own containers are contacted (and, while building, the package index).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import jobprocs
from head import REPO, Watched
from sshd_cluster import install_until_found

DEFAULT_BASE_IMAGE = "python:3.11-slim"
LOCAL_BASE_IMAGE = "sshrun-base:bookworm"
NODES = ("node1", "node2", "node3")
DOCKERD_LOG = Path("/tmp/sshrun-dockerd.log")
WHEEL_SOURCES = (Path("/opt/wheels"),)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

APT_TIMEOUT_S = 300.0
DOCKERD_START_TIMEOUT_S = 60.0
BASE_IMAGE_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 1200.0
UP_TIMEOUT_S = 240.0
READY_TIMEOUT_S = 120.0
DOWN_TIMEOUT_S = 120.0


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None,
         cwd: Path | None = REPO) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion (bounded); a timeout becomes a RuntimeError."""
    try:
        return subprocess.run(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        raise RuntimeError(f"{' '.join(argv)} did not finish within {timeout:.0f} s:\n"
                           + _tail(text)) from None


def _ok(argv: Sequence[str], timeout: float = 30.0) -> bool:
    try:
        return _run(argv, timeout).returncode == 0
    except (RuntimeError, OSError):
        return False


# -- Docker and Compose -----------------------------------------------------------------


def _docker_cli() -> str | None:
    return shutil.which("docker")


def _compose_command(docker: str | None) -> list[str] | None:
    """``docker compose`` (v2) when the plugin works, else ``docker-compose`` (v1), else None."""
    if docker and _ok([docker, "compose", "version"]):
        return [docker, "compose"]
    v1 = shutil.which("docker-compose")
    if v1 and _ok([v1, "version"]):
        return [v1]
    return None


def _dockerd() -> str | None:
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None)


def _daemon_answers(docker: str) -> bool:
    return _ok([docker, "version", "--format", "{{.Server.Version}}"], timeout=20)


def _start_dockerd(docker: str) -> None:
    """Start ``dockerd`` in its own session and wait (bounded) until it answers."""
    dockerd = _dockerd()
    if dockerd is None:
        raise RuntimeError("no dockerd to start (install the docker.io package)")
    if os.geteuid() != 0:
        raise RuntimeError("no Docker daemon answers and only root can start dockerd here")
    extra = os.environ.get("SSHRUN_DOCKERD_ARGS", "").split()
    with DOCKERD_LOG.open("ab") as log:
        proc = subprocess.Popen([dockerd, *extra], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True)
    deadline = time.monotonic() + DOCKERD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _daemon_answers(docker):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    log_tail = _tail(DOCKERD_LOG.read_text(errors="replace"), 20)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)
    raise RuntimeError(
        f"dockerd {' '.join(extra)} did not answer within {DOCKERD_START_TIMEOUT_S:.0f} s "
        f"(exit {proc.returncode}); {DOCKERD_LOG}:\n{log_tail}"
    )


def _find_docker() -> tuple[tuple[str, list[str]] | None, list[str]]:
    """The docker CLI and the Compose command, or None and the apt packages missing."""
    docker = _docker_cli()
    compose = _compose_command(docker)
    missing = []
    if docker is None or _dockerd() is None:
        missing.append("docker.io")
    if compose is None:
        missing.append("docker-compose")
    if docker is None or compose is None or missing:
        return None, missing
    return (docker, compose), []


def ensure_docker() -> tuple[str, list[str]]:
    """The docker CLI and the Compose command, with a daemon answering; installs and starts
    what is missing. Raises RuntimeError with the reason."""
    found, missing, notes = install_until_found(
        _find_docker, ["docker.io", "docker-compose"], APT_TIMEOUT_S)
    if found is None:
        raise RuntimeError(
            f"Docker and Compose are needed for the compose cluster, missing: "
            f"{', '.join(missing)}; apt-get install: "
            + ("; ".join(notes) or "did not provide them")
        )
    docker, compose = found
    if not _daemon_answers(docker):
        _start_dockerd(docker)
    return docker, compose


def _image_exists(docker: str, image: str) -> bool:
    return _ok([docker, "image", "inspect", image])


def resolve_base_image(docker: str) -> str:
    """The base image to build on (see the module docstring); builds one if need be."""
    configured = os.environ.get("SSHRUN_BASE_IMAGE")
    if configured:
        return configured
    for image in (DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE):
        if _image_exists(docker, image):
            return image
    # No `docker pull`: tests contact no registry. A Debian mirror, like the
    # package index, is fine: the script debootstraps from one.
    script = REPO / "docker" / "build-base-image.sh"
    done = _run(["bash", str(script), LOCAL_BASE_IMAGE], BASE_IMAGE_TIMEOUT_S)
    if done.returncode != 0 or not _image_exists(docker, LOCAL_BASE_IMAGE):
        raise RuntimeError(
            f"no base image here ({DEFAULT_BASE_IMAGE} or {LOCAL_BASE_IMAGE}) and {script} failed "
            f"(exit {done.returncode}):\n" + _tail(done.stdout + done.stderr)
        )
    return LOCAL_BASE_IMAGE


def _wheel_sources() -> list[Path]:
    dirs = list(WHEEL_SOURCES)
    for entry in os.environ.get("PIP_FIND_LINKS", "").split():
        if "://" not in entry or entry.startswith("file://"):
            dirs.append(Path(entry.removeprefix("file://")))
    return dirs


def prepare_build_inputs() -> list[str]:
    """Put a local torch wheel and the host's CA bundle where the build looks; what was done."""
    done = []
    wheels = REPO / os.environ.get("SSHRUN_WHEELS", "docker/wheels")
    if not any(wheels.glob("torch-*.whl")):
        for source in _wheel_sources():
            found = sorted(source.glob("torch-2.13.0*-cp311-*.whl")) if source.is_dir() else []
            if found:
                wheels.mkdir(parents=True, exist_ok=True)
                shutil.copy2(found[0], wheels / found[0].name)
                done.append(f"copied {found[0]} into {wheels}")
                break
    ca_dir = REPO / "docker" / "ca"
    if not any(ca_dir.glob("*.crt")) and HOST_CA_BUNDLE.is_file():
        ca_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(HOST_CA_BUNDLE, ca_dir / "host.crt")
        done.append(f"copied {HOST_CA_BUNDLE} to {ca_dir / 'host.crt'}")
    return done


# -- a command running in a container ---------------------------------------------------


# Run inside a node: tests/jobprocs.py itself (standard library only), then the scan:
# the live processes whose environment holds the canary, with their command lines.
_CANARY_SCAN = Path(jobprocs.__file__).read_text() + """
import json, sys
pids = canary_pids(sys.argv[1])
print(json.dumps([[pid, describe([pid]).split(": ", 1)[1].strip()] for pid in pids]))
"""


class ComposeCluster:
    """One compose project of docker-compose.yml (head, node1..node3), owned by this object."""

    def __init__(self, docker: str, compose: list[str], base_image: str,
                 project: str | None = None) -> None:
        self.docker = docker
        self.compose = compose
        self.base_image = base_image
        self.project = project or f"sshrun-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.env = dict(os.environ, SSHRUN_BASE_IMAGE=base_image)
        self.env.pop("SSH_AUTH_SOCK", None)
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}

    @classmethod
    def start(cls) -> ComposeCluster:
        """Install, build, bring up and wait for a fresh cluster (see the module docstring)."""
        t0 = time.monotonic()
        docker, compose = ensure_docker()
        t1 = time.monotonic()
        base = resolve_base_image(docker)
        t2 = time.monotonic()
        cluster = cls(docker, compose, base)
        cluster.notes = prepare_build_inputs()
        cluster.timings.update(docker=t1 - t0, base_image=t2 - t1)
        cluster.build()
        t3 = time.monotonic()
        cluster.timings["build"] = t3 - t2
        try:
            cluster.up()
            cluster.wait_ready()
        except BaseException:
            cluster.down()
            raise
        cluster.timings["up"] = time.monotonic() - t3
        return cluster

    # -- compose -------------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return [*self.compose, "-p", self.project, *args]

    def run(self, *args: str, timeout: float = 120.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = _run(self.argv(*args), timeout, env=self.env)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(self.argv(*args))} exited {done.returncode}:\n"
                               + _tail(done.stdout + done.stderr, 30))
        return done

    def build(self) -> None:
        """Build the head and node images (node2 and node3 use node1's image)."""
        self.run("build", "head", "node1", timeout=BUILD_TIMEOUT_S)

    def up(self) -> None:
        self.run("up", "-d", "--no-build", timeout=UP_TIMEOUT_S)

    def container(self, service: str) -> str:
        """The id of ``service``'s container, running or not."""
        ids = self.run("ps", "-a", "-q", service).stdout.split()
        if len(ids) != 1:
            raise RuntimeError(f"{service}: expected one container, found {ids}")
        return ids[0]

    def exec(self, service: str, *argv: str,
             timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``compose exec -T SERVICE ARGV...`` to completion (bounded); not checked."""
        return self.run("exec", "-T", service, *argv, timeout=timeout, check=False)

    def exec_background(self, service: str, *argv: str) -> Watched:
        """``compose exec -T`` in the background, its output collected line by line."""
        return Watched(self.argv("exec", "-T", service, *argv), cwd=REPO, env=self.env)

    def wait_ready(self, nodes: Sequence[str] = NODES,
                   timeout: float = READY_TIMEOUT_S) -> None:
        """Until the head logs in to every node with OpenSSH (strict host-key checking)."""
        deadline = time.monotonic() + timeout
        for node in nodes:
            while True:
                done = self.exec("head", "ssh", "-o", "ConnectTimeout=5", node, "true",
                                 timeout=30)
                if done.returncode == 0:
                    break
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"the head cannot log in to {node} after {timeout:.0f} s: "
                        f"{_tail(done.stdout + done.stderr)}\n{self.logs()}")
                time.sleep(1.0)

    def known_hosts(self) -> dict[str, str]:
        """The head's known_hosts: host name to ``keytype key``."""
        text = self.exec("head", "cat", "/root/.ssh/known_hosts").stdout
        return {line.split()[0]: " ".join(line.split()[1:3])
                for line in text.splitlines() if line.strip()}

    def sshrun(self, *args: str, timeout: float = 300.0) -> tuple[int, str, str]:
        """``sshrun ARGS`` on the head (working directory /workspace, the repository)."""
        done = self.run("exec", "-T", "head", "sshrun", *args, timeout=timeout, check=False)
        return done.returncode, done.stdout, done.stderr

    # -- faults and inspection -----------------------------------------------------------

    def kill(self, service: str) -> None:
        """``docker kill`` the service's container (SIGKILL to everything in it)."""
        done = _run([self.docker, "kill", self.container(service)], 60)
        if done.returncode != 0:
            raise RuntimeError(f"docker kill {service}: {_tail(done.stdout + done.stderr)}")

    def restart(self, service: str) -> None:
        """``docker start`` a killed node's container again and wait until it is reachable."""
        done = _run([self.docker, "start", self.container(service)], 60)
        if done.returncode != 0:
            raise RuntimeError(f"docker start {service}: {_tail(done.stdout + done.stderr)}")
        self.wait_ready([service])

    def canary_processes(self, service: str, canary: str) -> list[tuple[int, str]]:
        """Live processes in ``service``'s container whose environment holds the canary."""
        done = self.exec(service, "python3", "-c", _CANARY_SCAN, canary, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"canary scan on {service} failed: {done.stderr.strip()}")
        return [(int(pid), cmd) for pid, cmd in json.loads(done.stdout)]

    def wait_no_canary(self, service: str, canary: str,
                       timeout: float) -> list[tuple[int, str]]:
        """Poll until no process in ``service`` carries the canary; the survivors."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.canary_processes(service, canary)
            if not found or time.monotonic() >= deadline:
                return found
            time.sleep(0.5)

    def logs(self, tail: int = 40) -> str:
        with contextlib.suppress(RuntimeError, OSError):
            done = self.run("logs", "--no-color", "--tail", str(tail), timeout=60,
                            check=False)
            return done.stdout + done.stderr
        return "(no logs)"

    def down(self) -> None:
        """Remove the containers, the network and the key volume (bounded; never raises)."""
        with contextlib.suppress(RuntimeError, OSError):
            self.run("down", "-v", "--remove-orphans", "-t", "5", timeout=DOWN_TIMEOUT_S,
                     check=False)

    def __repr__(self) -> str:
        return (f"ComposeCluster(project={self.project}, compose={' '.join(self.compose)}, "
                f"base={self.base_image})")
