"""A real etcd server on a loopback address, for the etcd rendezvous tests (no mocks).

``EtcdServer(base_dir)`` finds ``etcd`` (Debian's ``etcd-server`` package; installed
with apt-get when it is missing and we are root, as tests/sshd_cluster.py installs
OpenSSH), starts it in the foreground on ``127.0.0.1`` with free client and peer
ports and its data directory under ``base_dir``, and waits, bounded, until it answers
``/health`` and its v2 API. ``endpoint`` is what ``--rdzv-endpoint`` takes;
``close()`` (or leaving the ``with`` block) stops it.

Why the v2 API: torch's ``etcd`` and ``etcd-v2`` rendezvous backends both talk to
etcd through python-etcd, which speaks etcd's v2 HTTP API only (``etcd-v2`` is the
version of torch's rendezvous, not of etcd's API). etcd 3.4 and 3.5 serve it with
``--enable-v2`` (off by default); etcd 3.6 removed it, and neither backend can work
with it: ``EtcdServer`` says so rather than starting a server that cannot serve.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from sshd_cluster import install_until_found, pick_port

ADDRESS = "127.0.0.1"
READY_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0


def _find_etcd() -> tuple[str | None, list[str]]:
    path = shutil.which("etcd") or ("/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK)
                                    else None)
    return path, [] if path else ["etcd"]


def ensure_etcd(timeout: float = 240.0) -> str:
    """The etcd program's path, installing Debian's etcd-server when missing and root."""
    path, missing, notes = install_until_found(_find_etcd, ["etcd-server"], timeout)
    if path is None:
        raise RuntimeError(
            f"etcd is required for the etcd rendezvous tests but {', '.join(missing)} is "
            f"missing ({'; '.join(notes) or 'installation did not provide it'}); "
            "install etcd-server")
    return path


def etcd_version(etcd: str) -> tuple[int, int, int]:
    done = subprocess.run([etcd, "--version"], capture_output=True, text=True, timeout=30,
                          check=False)
    match = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", done.stdout)
    if not match:
        raise RuntimeError(f"cannot tell {etcd}'s version from: {done.stdout!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def v2_flags(version: tuple[int, int, int]) -> list[str]:
    """The flags that give python-etcd the v2 API, on this etcd version."""
    if version >= (3, 6, 0):
        raise RuntimeError(
            f"etcd {'.'.join(map(str, version))} has no v2 API (removed in 3.6), and torch's "
            "etcd and etcd-v2 rendezvous backends speak only v2 (through python-etcd)")
    return ["--enable-v2=true"] if version >= (3, 4, 0) else []


class EtcdServer:
    """One etcd member on ``127.0.0.1``: client and peer ports free, data in ``base_dir``."""

    def __init__(self, base_dir: Path, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.etcd = ensure_etcd()
        self.version = etcd_version(self.etcd)
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.base_dir / "etcd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            for attempt in range(3):
                self.client_port, self.peer_port = self._two_ports()
                self._spawn()
                try:
                    self._wait_ready(time.monotonic() + ready_timeout)
                    return
                except _PortTaken:
                    self.close()
                    if attempt == 2:
                        raise
        except BaseException:
            self.close()
            raise

    @property
    def endpoint(self) -> str:
        return f"{ADDRESS}:{self.client_port}"

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{self.client_port}"

    def _two_ports(self) -> tuple[int, int]:
        client = pick_port([ADDRESS])
        peer = pick_port([ADDRESS])
        while peer == client:
            peer = pick_port([ADDRESS])
        return client, peer

    def _spawn(self) -> None:
        data = self.base_dir / f"data-{self.client_port}"
        client, peer = f"http://{ADDRESS}:{self.client_port}", f"http://{ADDRESS}:{self.peer_port}"
        argv = [
            self.etcd, "--name", "sshrun-test", "--data-dir", str(data),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"sshrun-test={peer}", "--initial-cluster-state", "new",
            *v2_flags(self.version),
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, object]:
        """``GET url+path``: the HTTP status and the JSON body."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def _wait_ready(self, deadline: float) -> None:
        """Until /health says true and the v2 API answers (bounded by ``deadline``)."""
        assert self.proc is not None
        last = "no attempt"
        while True:
            code = self.proc.poll()
            if code is not None:
                log = self.log.read_text(errors="replace")
                if "address already in use" in log[-4000:]:
                    raise _PortTaken(log[-400:])
                raise RuntimeError(f"etcd exited with {code} before it was ready: {log[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd at {self.url} not ready in time ({last}); log: "
                                   + self.log.read_text(errors="replace")[-2000:])
            try:
                status, health = self.get("/health")
                if status == 200 and isinstance(health, dict) and health.get("health") == "true":
                    status, _ = self.get("/v2/keys/")
                    if status == 200:
                        return
                    last = f"/v2/keys/ answered {status}"
                else:
                    last = f"/health answered {status} {health}"
            except (OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=CLOSE_TIMEOUT_S)

    def __enter__(self) -> EtcdServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _PortTaken(RuntimeError):
    """etcd could not bind one of its ports: another process took it meanwhile."""
