"""A real OpenSSH node in its own network namespace, for network-fault (chaos) tests.

``NetnsNode(base_dir, cluster)`` creates a uniquely named network namespace
(``sshrun-t-<random>``) joined to this machine by a veth pair with link-local addresses
in a /30 picked at random from ``169.254.213.0/24`` (host side ``.1``, namespace side
``.2`` of the /30; a /30 already on an interface here is never picked, nothing else is
routed there), brings ``lo`` and the veth up and starts ``/usr/sbin/sshd -D -e`` inside
the namespace (``ip netns exec NS sshd ...``) on port ``NETNS_SSH_PORT``. The node accepts
the client key of ``cluster`` (an ``SshdCluster``: the same authorized_keys file, so
``python3`` on the node is the test interpreter, see tests/sshd_cluster.py) and has its
own ed25519 host key; files under ``base_dir``:

``ssh_config_block``  text: a ``Host <alias>`` block like the cluster's (HostName, Port,
                      User, IdentityFile, strict host keys against ``known_hosts``)
``known_hosts``       ``[ADDR]:PORT ssh-ed25519 ...`` for this node only
``sshd_config``, ``ssh_host_ed25519_key``, ``sshd.pid``, ``sshd.log``

Faults: ``blackhole()`` appends ``-j DROP`` to INPUT and OUTPUT inside the namespace
(nothing passes, in either direction: no RST, no FIN, the peer only sees silence) and
checks that a TCP connect to the node now times out; ``restore()`` deletes the rules.
The iptables variant is probed when the node is created (``iptables-nft``, then
``iptables-legacy``, then ``iptables``: the first that lists the namespace's filter
table). ``contains(pid)`` says whether a process lives in the namespace (processes
there share this machine's PID namespace, so ``/proc`` scanning sees them).

``close()`` (or leaving the ``with`` block), always and bounded: terminates sshd and
its descendants, SIGKILLs whatever still lives in the namespace (only what this object
started can be there), deletes the veth pair and the namespace, and waits until both
are gone. Nothing but this namespace's address is ever contacted.

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), ``ip`` (iproute2) and iptables; both are
installed with apt-get when missing and root. ``RuntimeError`` says why when the
namespace cannot be built.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from jobprocs import start_time
from sshd_cluster import (
    SshdCluster,
        _signal_if_same,
    client_host_block,
    descendants,
    install_until_found,
    sshd_config_text,
)

NETNS_PREFIX = "sshrun-t-"
LINK_LOCAL_POOL = ipaddress.IPv4Network("169.254.213.0/24")
NETNS_SSH_PORT = 2222
READY_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 15.0
IPTABLES_CANDIDATES = ("iptables-nft", "iptables-legacy", "iptables")


@dataclass(frozen=True)
class NetTools:
    """Absolute paths of ``ip`` and of the iptables programs found (not yet probed)."""

    ip: str
    iptables: tuple[str, ...]


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}", f"/usr/bin/{name}")
         if os.access(p, os.X_OK)),
        None,
    )


def _find_net_tools() -> tuple[NetTools | None, list[str]]:
    ip = _which("ip")
    iptables = tuple(p for p in (_which(n) for n in IPTABLES_CANDIDATES) if p is not None)
    missing = ([] if ip else ["ip (iproute2)"]) + ([] if iptables else ["iptables"])
    if ip is None or not iptables:
        return None, missing
    return NetTools(ip, iptables), []


def ensure_net_tools(timeout: float = 240.0) -> NetTools:
    """``ip`` and iptables, installed with apt-get (iproute2, iptables) when missing and root.

    Waits (bounded by ``timeout``) for an apt-get already running elsewhere, like
    ``sshd_cluster.ensure_openssh``. Raises ``RuntimeError`` with the reason otherwise.
    """
    tools, missing, notes = install_until_found(
        _find_net_tools, ["iproute2", "iptables"], timeout)
    if tools is None:
        reason = "; ".join(notes) or "installation did not provide them"
        raise RuntimeError(
            f"network namespace tests need {', '.join(missing)} ({reason}); "
            "install iproute2 and iptables"
        )
    return tools


def _run(argv: list[str], what: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Run ``argv``; its stdout, or ``RuntimeError`` naming ``what`` with its stderr."""
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: {' '.join(argv)} timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise RuntimeError(f"{what}: {' '.join(argv)} could not run: {exc}") from None
    if done.returncode != 0:
        hint = ""
        if os.geteuid() != 0:
            hint = " (not root: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
        raise RuntimeError(
            f"{what}: {' '.join(argv)} exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()}{hint}"
        )
    return done.stdout


def _addresses_in_use(ip: str) -> list[tuple[str, ipaddress.IPv4Interface]]:
    """``(interface, address)`` for every IPv4 address of this machine."""
    out = _run([ip, "-4", "-o", "addr", "show"], "listing this machine's addresses")
    found: list[tuple[str, ipaddress.IPv4Interface]] = []
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields and len(fields) > 1:
            found.append((fields[1].split("@")[0],
                          ipaddress.IPv4Interface(fields[fields.index("inet") + 1])))
    return found


def _pick_subnet(ip: str) -> ipaddress.IPv4Network:
    """A random /30 of ``LINK_LOCAL_POOL`` that no interface of this machine overlaps."""
    used = [iface for _, iface in _addresses_in_use(ip)]
    free = [
        net for net in LINK_LOCAL_POOL.subnets(new_prefix=30)
        if not any(iface.network.overlaps(net) for iface in used)
    ]
    if not free:
        raise RuntimeError(f"every /30 of {LINK_LOCAL_POOL} is in use on this machine")
    return secrets.choice(free)


def _ns_ino(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class NetnsNode:
    """One sshd in its own network namespace; see the module docstring."""

    def __init__(
        self,
        base_dir: Path,
        cluster: SshdCluster,
        alias: str = "nsnode",
        port: int = NETNS_SSH_PORT,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.net = ensure_net_tools()
        self.sshd_tools = cluster.tools
        self.dir = Path(base_dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.alias = alias
        self.port = port
        self.user = cluster.user
        self.client_key = cluster.client_key
        self.authorized_keys = cluster.authorized_keys
        token = secrets.token_hex(4)
        self.name = f"{NETNS_PREFIX}{token}"
        self.host_veth = f"srt{token}h"  # interface names: 15 characters at most
        self.ns_veth = f"srt{token}n"
        self.config = self.dir / "sshd_config"
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.pid_file = self.dir / "sshd.pid"
        self.log = self.dir / "sshd.log"
        self.known_hosts = self.dir / "known_hosts"
        self.proc: subprocess.Popen[bytes] | None = None
        self.iptables: str | None = None
        self.blackholed = False
        self._created = False
        self._ns_id: tuple[int, int] | None = None
        self.host_address = ""  # this machine's end of the veth
        self.address = ""  # the node's address, inside the namespace
        self.prefixlen = 30
        try:
            self._create_namespace()
            self.iptables = self._probe_iptables()
            self._write_files()
            self._start_sshd(ready_timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            raise

    # -- setup -----------------------------------------------------------------------------

    def _ip(self, *args: str, what: str) -> str:
        return _run([self.net.ip, *args], what)

    def _create_namespace(self) -> None:
        self._ip("netns", "add", self.name,
                 what=f"creating network namespace {self.name}")
        self._created = True
        self._ns_id = _ns_ino(f"/run/netns/{self.name}")
        if self._ns_id is None:
            raise RuntimeError(f"ip netns add {self.name} left no /run/netns/{self.name}")
        self._ip("link", "add", self.host_veth, "type", "veth", "peer", "name", self.ns_veth,
                 "netns", self.name, what="creating the veth pair")
        self._address_host_side()
        self._ip("link", "set", self.host_veth, "up", what="bringing the host veth up")
        self._ip("-n", self.name, "addr", "add", f"{self.address}/{self.prefixlen}",
                 "dev", self.ns_veth, what="addressing the namespace side of the veth")
        self._ip("-n", self.name, "link", "set", "lo", "up", what="bringing lo up")
        self._ip("-n", self.name, "link", "set", self.ns_veth, "up",
                 what="bringing the namespace veth up")

    def _address_host_side(self, attempts: int = 5) -> None:
        """Give the host veth a free /30; another run racing for the same one makes us move."""
        for _ in range(attempts):
            subnet = _pick_subnet(self.net.ip)
            first, second = list(subnet.hosts())[:2]
            self.host_address, self.address = str(first), str(second)
            self.prefixlen = subnet.prefixlen
            cidr = f"{self.host_address}/{self.prefixlen}"
            self._ip("addr", "add", cidr, "dev", self.host_veth,
                     what="addressing the host side of the veth")
            if not any(
                iface.network.overlaps(subnet) and name != self.host_veth
                for name, iface in _addresses_in_use(self.net.ip)
            ):
                return
            self._ip("addr", "del", cidr, "dev", self.host_veth,
                     what="giving back a /30 another interface took meanwhile")
        raise RuntimeError(f"no free /30 in {LINK_LOCAL_POOL} after {attempts} attempts")

    def _in_ns(self, *argv: str) -> list[str]:
        return [self.net.ip, "netns", "exec", self.name, *argv]

    def _probe_iptables(self) -> str:
        notes: list[str] = []
        for candidate in self.net.iptables:
            try:
                _run(self._in_ns(candidate, "-w", "5", "-S"), f"probing {candidate}")
            except RuntimeError as exc:
                notes.append(str(exc))
                continue
            return candidate
        raise RuntimeError("no iptables variant works in a network namespace here: "
                           + " | ".join(notes))

    def _keygen(self) -> str:
        for stale in (self.host_key, self.host_key.with_name(self.host_key.name + ".pub")):
            stale.unlink(missing_ok=True)
        subprocess.run(
            [self.sshd_tools.ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", self.alias,
             "-f", str(self.host_key)],
            stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=30,
        )
        self.host_key.chmod(0o600)
        return self.host_key.with_name(self.host_key.name + ".pub").read_text().strip()

    def _write_files(self) -> None:
        keytype, key = self._keygen().split()[:2]
        self.known_hosts.write_text(f"[{self.address}]:{self.port} {keytype} {key}\n")
        # The same server settings as an SshdCluster node.
        self.config.write_text(sshd_config_text(
            self.address, self.port, self.host_key, self.pid_file, self.authorized_keys))

    @property
    def ssh_config_block(self) -> str:
        """The client's ``Host <alias>`` block for this node (as the cluster writes them)."""
        return client_host_block(self.alias, self.address, self.port, self.user,
                                 self.client_key, self.known_hosts)

    def _start_sshd(self, ready_timeout: float) -> None:
        with self.log.open("ab") as log:
            # ip netns exec execs sshd in the namespace: self.proc.pid is sshd's pid.
            self.proc = subprocess.Popen(
                self._in_ns(self.sshd_tools.sshd, "-D", "-e", "-f", str(self.config)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout
        last_error = "no attempt"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"sshd in {self.name} exited with {rc}: "
                                   + self.log.read_text(errors="replace"))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"sshd in {self.name} ({self.address}:{self.port}) not ready after "
                    f"{ready_timeout:.0f} s ({last_error}); log: "
                    + self.log.read_text(errors="replace")
                )
            try:
                banner = self._banner(min(1.0, remaining))
                if banner.startswith(b"SSH-2.0"):
                    return
                last_error = f"unexpected banner {banner[:64]!r}"
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)

    def _banner(self, timeout: float) -> bytes:
        with socket.create_connection((self.address, self.port), timeout=timeout) as sock:
            banner = b""
            while b"\n" not in banner and len(banner) < 512:
                chunk = sock.recv(512)
                if not chunk:
                    break
                banner += chunk
            if banner.startswith(b"SSH-2.0"):
                # Say who we are so sshd logs a plain close, not a protocol error.
                with contextlib.suppress(OSError):
                    sock.sendall(b"SSH-2.0-netns_node_probe\r\n")
            return banner

    # -- faults ----------------------------------------------------------------------------

    def _iptables(self, *args: str, what: str) -> str:
        assert self.iptables is not None
        return _run(self._in_ns(self.iptables, "-w", "5", *args), what)

    def rules(self) -> str:
        """The namespace's filter table, as ``iptables -S`` prints it."""
        return self._iptables("-S", what="listing the namespace's rules")

    def blackhole(self, verify_timeout: float = 1.0) -> None:
        """Drop every packet into and out of the namespace; check that connects time out."""
        self._iptables("-A", "INPUT", "-j", "DROP", what="dropping input")
        self.blackholed = True
        self._iptables("-A", "OUTPUT", "-j", "DROP", what="dropping output")
        try:
            banner = self._banner(verify_timeout)
        except TimeoutError:
            return  # silence: what a black hole looks like
        except OSError as exc:
            raise RuntimeError(f"black hole leaks: connect to {self.address}:{self.port} "
                               f"failed fast ({exc}) instead of timing out") from None
        raise RuntimeError(f"black hole leaks: {self.address}:{self.port} still answers "
                           f"({banner[:32]!r})")

    def drop_port(self, address: str, port: int) -> None:
        """Drop what the namespace sends to ``address:port`` (TCP): a firewall on one port."""
        self._iptables("-A", "OUTPUT", "-p", "tcp", "-d", address, "--dport", str(port),
                       "-j", "DROP", what=f"dropping TCP to {address}:{port}")

    def restore(self) -> None:
        """Delete the DROP rules that ``blackhole()`` added (both, as often as added)."""
        for chain in ("INPUT", "OUTPUT"):
            while f"-A {chain} -j DROP" in self.rules().splitlines():
                self._iptables("-D", chain, "-j", "DROP", what=f"deleting the {chain} drop")
        self.blackholed = False

    # -- processes -------------------------------------------------------------------------

    def contains(self, pid: int) -> bool:
        """Whether process ``pid`` lives in this namespace."""
        return self._ns_id is not None and _ns_ino(f"/proc/{pid}/ns/net") == self._ns_id

    def pids(self) -> list[int]:
        """Every live process in this namespace."""
        return [int(e) for e in os.listdir("/proc")
                if e.isdigit() and self.contains(int(e))
                and start_time(int(e)) is not None]

    # -- teardown --------------------------------------------------------------------------

    def _stop_processes(self, timeout: float) -> list[str]:
        errors: list[str] = []
        deadline = time.monotonic() + timeout
        proc = self.proc
        if proc is not None and proc.poll() is None:
            tree = descendants(proc.pid)
            for pid, start in tree:
                _signal_if_same(pid, start, signal.SIGTERM)
                _signal_if_same(pid, start, signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()) / 2)
            except subprocess.TimeoutExpired:
                proc.kill()
        # Whatever still lives in the namespace was started through our sshd.
        while True:
            left = [(pid, start_time(pid)) for pid in self.pids()]
            if not left:
                break
            if time.monotonic() >= deadline:
                errors.append(f"processes left in {self.name}: {[p for p, _ in left]}")
                break
            for pid, started in left:
                if started is not None:
                    _signal_if_same(pid, started, signal.SIGKILL)
            time.sleep(0.05)
        if proc is not None:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                errors.append(f"sshd {proc.pid} in {self.name} did not exit")
        return errors

    def _link_exists(self) -> bool:
        return os.path.exists(f"/sys/class/net/{self.host_veth}")

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Kill sshd and everything in the namespace, delete the veth and the namespace."""
        deadline = time.monotonic() + timeout
        errors = self._stop_processes(timeout / 2)
        if self._link_exists():
            try:
                self._ip("link", "del", self.host_veth, what="deleting the veth pair")
            except RuntimeError as exc:
                errors.append(str(exc))
        if self._created and os.path.exists(f"/run/netns/{self.name}"):
            try:
                self._ip("netns", "del", self.name, what="deleting the namespace")
            except RuntimeError as exc:
                errors.append(str(exc))
        while self._link_exists() or os.path.exists(f"/run/netns/{self.name}"):
            if time.monotonic() >= deadline:
                errors.append(f"{self.host_veth} or /run/netns/{self.name} still exists")
                break
            time.sleep(0.05)
        self._created = False
        self.blackholed = False
        if errors:
            raise RuntimeError(f"cleaning up {self.name}: " + "; ".join(errors))

    def __enter__(self) -> NetnsNode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NetnsNode({self.name}, {self.address}:{self.port}, iptables={self.iptables})"
