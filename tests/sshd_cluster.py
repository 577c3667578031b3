"""A real OpenSSH test cluster on loopback addresses (no mocks).

``SshdCluster(n, base_dir)`` starts ``n`` real ``/usr/sbin/sshd`` processes. Node ``k``
listens on ``127.0.0.{first_octet + k}`` (``127.0.0.2``, ``127.0.0.3``, ... by default), all
on one shared TCP port; each sshd binds only its own address. Every node has its own ed25519
host key, ``sshd_config``, pid file and log file under ``base_dir/nodeK/``. One generated
client key (ed25519, no passphrase) is authorized on every node, and the files a client
needs are written into ``base_dir``:

``client_key``   ``base_dir/client/id_ed25519`` (public half next to it, ``.pub``)
``known_hosts``  one ``[127.0.0.K]:PORT ssh-ed25519 ...`` line per node, written directly from
                 the generated host public keys (strict checking works out of the box)
``ssh_config``   OpenSSH client config: ``Host node0``, ``node1``, ... aliases with HostName,
                 Port, User, IdentityFile, UserKnownHostsFile, ``StrictHostKeyChecking yes``,
                 ``BatchMode yes``; use ``ssh -F base_dir/ssh_config node1 CMD``
``hostfile``     the aliases, one per line

Which interpreter the nodes use
-------------------------------
The authorized_keys line carries ``environment="PATH=<dir of sys.executable>:/usr/local/bin:
/usr/bin:/bin"`` (sshd runs with ``PermitUserEnvironment yes``), so ``python3`` in a command
run on a node is the interpreter running the tests (``sys.executable``'s directory, e.g. the
active virtualenv's ``bin``), not a pyenv shim. The line also sets ``SHLVL=1``: Debian's bash
sources ``~/.bashrc`` for commands run by sshd only when its shell level is below 2, and on
this machine kind root's ``~/.bashrc`` runs ``pyenv init``, which would put the pyenv shims
first on ``PATH`` again (and cost ~0.15 s per command). With ``SHLVL=1`` bash starts at
level 2 and skips ``~/.bashrc``; nodes see exactly the ``PATH`` above.

``key_options`` adds options to that authorized_keys line, e.g. a forced
``command="/path/noisy-login"`` that prints like a chatty login shell and then runs
``exec sh -c "$SSH_ORIGINAL_COMMAND"`` (tests/test_hostile_node.py), without touching the
machine's own rc files.

``sshd_options`` are sshd_config lines that replace the defaults' lines of the same
keywords, e.g. ``MaxStartups 1:100:1`` or ``LogLevel VERBOSE``. ``per_sshd`` (1 to 16,
OpenSSH's limit on listen addresses) lets one sshd serve that many consecutive nodes, with one
host key, so that hundreds of nodes do not take hundreds of sshd processes; the faults below
then hit the node's whole group.

Faults: ``stop_node(k)`` / ``cont_node(k)`` send SIGSTOP / SIGCONT to node ``k``'s sshd
listener (new connections then hang before the SSH banner), ``kill_node(k)`` SIGKILLs it
(new connections are refused), ``start_node(k)`` restarts a killed node on the same address,
port and host key. ``sessions=True`` also signals the listener's descendants (the
per-connection sshd processes and the commands they run).

Only loopback addresses are ever contacted. The sshd processes are started with
``start_new_session=True`` in the foreground (``-D -e``), so this object owns them;
``close()`` (or leaving the ``with`` block) terminates them and their remaining descendants.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from jobprocs import start_time

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")
APT_LOCKS = (
    Path("/var/lib/dpkg/lock-frontend"),
    Path("/var/lib/dpkg/lock"),
    Path("/var/lib/apt/lists/lock"),
    Path("/var/cache/apt/archives/lock"),
)
READY_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class OpenSSH:
    """Absolute paths of the OpenSSH programs the cluster uses."""

    sshd: str
    ssh: str
    ssh_keygen: str
    ssh_keyscan: str


def _find_openssh() -> tuple[OpenSSH | None, list[str]]:
    missing: list[str] = []
    if not os.access(SSHD, os.X_OK):
        missing.append(SSHD)
    found: dict[str, str] = {}
    for name in ("ssh", "ssh-keygen", "ssh-keyscan"):
        path = shutil.which(name) or next(
            (p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.access(p, os.X_OK)), None
        )
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        return None, missing
    return OpenSSH(SSHD, found["ssh"], found["ssh-keygen"], found["ssh-keyscan"]), []


def _apt_locked() -> bool:
    """Whether another apt/dpkg holds one of its locks (probed with the same fcntl lock)."""
    for lock in APT_LOCKS:
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops the probe lock, if we got it
    return False


def _run_apt(args: list[str], deadline: float) -> str:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return f"no time left for {' '.join(args)}"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock_wait = max(1, int(remaining) - 5)
    cmd = ["apt-get", "-o", f"DPkg::Lock::Timeout={lock_wait}", *args]
    try:
        done = subprocess.run(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=remaining,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{' '.join(cmd)} timed out after {remaining:.0f} s"
    except OSError as exc:
        return f"{' '.join(cmd)} could not run: {exc}"
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        return f"{' '.join(cmd)} exited {done.returncode}: " + " | ".join(tail)
    return ""


T = TypeVar("T")


def install_until_found(find: Callable[[], tuple[T | None, list[str]]], packages: list[str],
                        timeout: float) -> tuple[T | None, list[str], list[str]]:
    """``find()``; when it finds nothing and we are root, apt-get install ``packages``.

    Waits (bounded by ``timeout``) for an apt-get already running elsewhere, e.g. one
    started in the background, then looks again before installing anything. Returns
    what ``find`` returns last (the tools, or None and what is missing) and notes on
    why an installation did not happen or failed.
    """
    deadline = time.monotonic() + timeout
    tools, missing = find()
    notes: list[str] = []
    if tools is None and os.geteuid() == 0 and shutil.which("apt-get"):
        while _apt_locked() and time.monotonic() < deadline:
            time.sleep(1.0)
        tools, missing = find()
        if tools is None:
            for args in (["update"], ["install", "-y", *packages]):
                note = _run_apt(args, deadline)
                if note:
                    notes.append(note)
            tools, missing = find()
    elif tools is None:
        notes.append(
            "not root, cannot install" if os.geteuid() != 0 else "apt-get is not available"
        )
    return tools, missing, notes


def ensure_openssh(timeout: float = 240.0) -> OpenSSH:
    """Return the OpenSSH programs, installing them with apt-get when missing and root.

    Raises ``RuntimeError`` with the reason when the programs are still missing (see
    ``install_until_found``). Also makes sure ``/run/sshd`` (sshd's privilege
    separation directory) exists.
    """
    tools, missing, notes = install_until_found(
        _find_openssh, ["openssh-server", "openssh-client"], timeout)
    if tools is None:
        reason = "; ".join(notes) or "installation did not provide them"
        raise RuntimeError(
            f"OpenSSH is required for the sshd test cluster but {', '.join(missing)} "
            f"missing ({reason}); install openssh-server and openssh-client "
            "(see /tmp/apt.log if an install was started in the background)"
        )
    try:
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    except PermissionError:
        if os.geteuid() == 0:
            raise
        # A non-root sshd does not use the privilege separation directory.
    return tools


def current_user() -> str:
    """The login name of the user running the tests (``root`` on this machine kind)."""
    return pwd.getpwuid(os.getuid()).pw_name


def node_path() -> str:
    """The ``PATH`` nodes run commands with: the test interpreter's directory first."""
    return f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


def pick_port(addresses: list[str], attempts: int = 50) -> int:
    """A TCP port that is free on every one of ``addresses`` right now."""
    for _ in range(attempts):
        socks: list[socket.socket] = []
        try:
            first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(first)
            first.bind((addresses[0], 0))
            port: int = first.getsockname()[1]
            for addr in addresses[1:]:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind((addr, port))
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no TCP port free on all of {addresses} after {attempts} attempts")


def _quote(value: str | Path) -> str:
    text = str(value)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[tuple[int, int]]:
    """``(pid, start_time)`` of every live descendant of ``pid`` (parents first)."""
    children = _children_map()
    found: list[tuple[int, int]] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        start = start_time(child)
        if start is not None:
            found.append((child, start))
        todo.extend(children.get(child, []))
    return found


def _signal_if_same(pid: int, start: int, sig: int) -> None:
    """Signal ``pid`` only if it is still the process that started at ``start``."""
    if start_time(pid) == start:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def sshd_config_text(address: str | Sequence[str], port: int, host_key: Path, pid_file: Path,
                     authorized_keys: Path, options: Sequence[str] = ()) -> str:
    """A test node's sshd_config: key logins only, the test user's environment kept.

    ``options`` replace the default lines of the same keywords (sshd keeps the first
    value of most keywords but the last of some, such as MaxStartups)."""
    addresses = [address] if isinstance(address, str) else list(address)
    overridden = {line.split(None, 1)[0].lower() for line in options if line.strip()}
    defaults = [line for line in _SSHD_DEFAULTS if line.split(None, 1)[0].lower()
                not in overridden]
    return "\n".join([
        *(f"ListenAddress {a}" for a in addresses),
        f"Port {port}",
        f"HostKey {_quote(host_key)}",
        f"PidFile {_quote(pid_file)}",
        f"AuthorizedKeysFile {_quote(authorized_keys)}",
        *options,
        *defaults,
        "",
    ])


_SSHD_DEFAULTS = (
    "UsePAM no",
    "StrictModes no",
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PermitRootLogin yes",
    "PermitUserEnvironment yes",
    "MaxStartups 100:30:200",
    "LogLevel ERROR",
    "X11Forwarding no",
    "PrintMotd no",
    "Subsystem sftp internal-sftp",
)


def client_host_block(alias: str, address: str, port: int, user: str, client_key: Path,
                      known_hosts: Path) -> str:
    """The client's ``Host <alias>`` block for a test node: strict host keys, one key."""
    return "\n".join([
        f"Host {alias}",
        f"    HostName {address}",
        f"    Port {port}",
        f"    User {user}",
        f"    IdentityFile {_quote(client_key)}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {_quote(known_hosts)}",
        "    StrictHostKeyChecking yes",
        "    BatchMode yes",
        "    LogLevel ERROR",
        "",
    ])


@dataclass
class _Node:
    index: int
    alias: str
    address: str
    dir: Path
    config: Path
    host_key: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


# OpenSSH's MAX_LISTEN_SOCKS: one sshd binds at most this many addresses.
MAX_LISTEN_ADDRESSES = 16
# 127.0.0.2-254, then 127.0.1.1-254, 127.0.2.1-254, ...: far more than any test needs.
MAX_NODES = 253 * 16


def loopback_addresses(n: int, first_octet: int = 2) -> list[str]:
    """``n`` loopback addresses from ``127.0.0.{first_octet}``, on into 127.0.1.x and on
    (never .0 or .255: Linux routes all of 127/8 to lo, but those look like network and
    broadcast addresses to people reading logs)."""
    addresses: list[str] = []
    third, fourth = 0, first_octet
    while len(addresses) < n:
        if fourth > 254:
            third, fourth = third + 1, 1
        addresses.append(f"127.0.{third}.{fourth}")
        fourth += 1
    return addresses


class SshdCluster:
    """``n`` real sshd nodes on ``127.0.0.{first_octet}``... sharing one port.

    Use as a context manager (or call ``close()``). See the module docstring for the files
    written into ``base_dir`` and the interpreter the nodes use.
    """

    def __init__(
        self,
        n: int,
        base_dir: Path,
        first_octet: int = 2,
        port: int | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        key_options: str = "",
        sshd_options: Sequence[str] = (),
        per_sshd: int = 1,
    ) -> None:
        if n < 1:
            raise ValueError(f"a cluster needs at least one node, not {n}")
        if not 1 <= per_sshd <= MAX_LISTEN_ADDRESSES:
            raise ValueError(f"an sshd listens on 1 to {MAX_LISTEN_ADDRESSES} addresses, "
                             f"not {per_sshd}")
        self.sshd_options = tuple(sshd_options)
        self.per_sshd = per_sshd
        if first_octet < 1 or first_octet > 254 or n > MAX_NODES:
            raise ValueError(f"{n} nodes from 127.0.0.{first_octet} is not valid")
        self.tools = ensure_openssh()
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.user = current_user()
        self.ready_timeout = ready_timeout
        self.key_options = key_options
        self.addresses: list[str] = loopback_addresses(n, first_octet)
        self.aliases: list[str] = [f"node{k}" for k in range(n)]
        self.client_key: Path = self.base_dir / "client" / "id_ed25519"
        self.authorized_keys: Path = self.base_dir / "authorized_keys"
        self.known_hosts: Path = self.base_dir / "known_hosts"
        self.ssh_config: Path = self.base_dir / "ssh_config"
        self.hostfile: Path = self.base_dir / "hostfile"
        self._nodes: list[_Node] = []
        for k, (alias, addr) in enumerate(zip(self.aliases, self.addresses, strict=True)):
            node_dir = self.base_dir / alias
            self._nodes.append(
                _Node(
                    index=k,
                    alias=alias,
                    address=addr,
                    dir=node_dir,
                    config=node_dir / "sshd_config",
                    host_key=node_dir / "ssh_host_ed25519_key",
                    log=node_dir / "sshd.log",
                )
            )
        # Node k is served by the sshd of node k - k % per_sshd (its "leader"),
        # which listens on every address of its group with one host key.
        self._leaders = self._nodes[::per_sshd]
        self._fixed_port = port is not None
        self.port: int = port if port is not None else pick_port(self.addresses)
        try:
            self._write_keys()
            self._start_all()
        except BaseException:
            self.close()
            raise

    # -- setup -------------------------------------------------------------------------

    def _keygen(self, path: Path, comment: str) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, path.with_name(path.name + ".pub")):
            stale.unlink(missing_ok=True)
        subprocess.run(
            [self.tools.ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=30,
        )
        path.chmod(0o600)
        return path.with_name(path.name + ".pub").read_text().strip()

    def _write_keys(self) -> None:
        client_pub = self._keygen(self.client_key, f"sshrun-test-client@{self.base_dir.name}")
        options = f'environment="PATH={node_path()}",environment="SHLVL=1"'
        if self.key_options:
            options += "," + self.key_options
        self.authorized_keys.write_text(f"{options} {client_pub}\n")
        self.authorized_keys.chmod(0o600)
        self.hostfile.write_text("".join(f"{alias}\n" for alias in self.aliases))
        for node in self._nodes:
            node.host_key = self._leader(node.index).host_key
        pubs = [self._keygen(leader.host_key, leader.alias) for leader in self._leaders]
        self._host_pubs = [pubs[k // self.per_sshd] for k in range(len(self._nodes))]
        self._write_node_configs()

    def _leader(self, k: int) -> _Node:
        return self._nodes[k - k % self.per_sshd]

    def _group(self, leader: _Node) -> list[_Node]:
        return self._nodes[leader.index:leader.index + self.per_sshd]

    def _write_node_configs(self) -> None:
        known: list[str] = []
        client: list[str] = [
            f"# sshrun test cluster in {self.base_dir}; use: ssh -F {self.ssh_config} node0\n"
        ]
        for node, host_pub in zip(self._nodes, self._host_pubs, strict=True):
            keytype, key = host_pub.split()[:2]
            known.append(f"[{node.address}]:{self.port} {keytype} {key}\n")
            if self._leader(node.index) is node:
                node.config.write_text(sshd_config_text(
                    [n.address for n in self._group(node)], self.port, node.host_key,
                    node.dir / "sshd.pid", self.authorized_keys, self.sshd_options))
            client.append(client_host_block(node.alias, node.address, self.port, self.user,
                                            self.client_key, self.known_hosts))
        self.known_hosts.write_text("".join(known))
        self.ssh_config.write_text("\n".join(client))

    def _start_all(self) -> None:
        for attempt in range(3):
            for leader in self._leaders:
                self._spawn(leader)
            deadline = time.monotonic() + self.ready_timeout
            try:
                for node in self._nodes:
                    self._wait_ready(node, deadline)
                return
            except _PortTaken:
                if self._fixed_port or attempt == 2:
                    raise
                # Lost a race for the port with another process: pick another and retry.
                self._terminate_all()
                self.port = pick_port(self.addresses)
                self._write_node_configs()

    def _spawn(self, node: _Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [self.tools.sshd, "-D", "-e", "-f", str(node.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def _wait_ready(self, node: _Node, deadline: float) -> None:
        """Wait until the node accepts TCP and sends its ``SSH-2.0`` banner."""
        leader = self._leader(node.index)
        proc = leader.proc
        assert proc is not None
        last_error = "no attempt"
        while True:
            rc = proc.poll()
            if rc is not None:
                log = leader.log.read_text(errors="replace")
                msg = f"sshd of {node.alias} ({node.address}:{self.port}) exited with {rc}: {log}"
                if "Address already in use" in log or "Cannot bind" in log:
                    raise _PortTaken(msg)
                raise RuntimeError(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"sshd of {node.alias} ({node.address}:{self.port}) not ready after "
                    f"{self.ready_timeout:.0f} s ({last_error}); log: "
                    + leader.log.read_text(errors="replace")
                )
            try:
                with socket.create_connection(
                    (node.address, self.port), timeout=min(1.0, remaining)
                ) as sock:
                    banner = b""
                    while b"\n" not in banner and len(banner) < 512:
                        chunk = sock.recv(512)
                        if not chunk:
                            break
                        banner += chunk
                    if banner.startswith(b"SSH-2.0"):
                        # Say who we are so sshd logs a plain close, not a protocol error.
                        with contextlib.suppress(OSError):
                            sock.sendall(b"SSH-2.0-sshd_cluster_probe\r\n")
                        return
                    last_error = f"unexpected banner {banner[:64]!r}"
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)

    # -- public API --------------------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self._nodes)

    @property
    def pids(self) -> list[int]:
        """The pid of each node's sshd listener (index ``k`` is node ``k``)."""
        return [(proc.pid if (proc := self._leader(k).proc) is not None else -1)
                for k in range(len(self._nodes))]

    @property
    def logs(self) -> list[Path]:
        """Each node's sshd log file (its stderr, ``LogLevel ERROR``): its sshd's."""
        return [self._leader(k).log for k in range(len(self._nodes))]

    def alias(self, k: int) -> str:
        return self._nodes[k].alias

    def address(self, k: int) -> str:
        return self._nodes[k].address

    def ssh_command(self, k: int, *command: str) -> list[str]:
        """``ssh -F ssh_config nodeK COMMAND...`` as an argv list."""
        return [self.tools.ssh, "-F", str(self.ssh_config), self._nodes[k].alias, *command]

    def _signal(self, k: int, sig: int, sessions: bool) -> None:
        node = self._leader(k)
        if node.proc is None or node.proc.poll() is not None:
            raise RuntimeError(f"sshd of {node.alias} is not running")
        tree = descendants(node.proc.pid) if sessions else []
        if sig == signal.SIGCONT:
            node.proc.send_signal(sig)
            for pid, start in tree:
                _signal_if_same(pid, start, sig)
        else:
            for pid, start in tree:
                _signal_if_same(pid, start, sig)
            node.proc.send_signal(sig)

    def stop_node(self, k: int, sessions: bool = False) -> None:
        """SIGSTOP node ``k``'s sshd listener (and its sessions' processes if ``sessions``)."""
        self._signal(k, signal.SIGSTOP, sessions)

    def cont_node(self, k: int, sessions: bool = False) -> None:
        """SIGCONT what ``stop_node`` stopped."""
        self._signal(k, signal.SIGCONT, sessions)

    def kill_node(self, k: int, sessions: bool = False) -> None:
        """SIGKILL node ``k``'s sshd listener (and its sessions' processes if ``sessions``)."""
        self._signal(k, signal.SIGKILL, sessions)
        proc = self._leader(k).proc
        assert proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=CLOSE_TIMEOUT_S)

    def start_node(self, k: int) -> None:
        """(Re)start node ``k``'s sshd after ``kill_node`` and wait until it is ready."""
        node = self._leader(k)
        if node.proc is not None and node.proc.poll() is None:
            return
        self._spawn(node)
        for member in self._group(node):
            self._wait_ready(member, time.monotonic() + self.ready_timeout)

    def _terminate_all(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        running = [n.proc for n in self._nodes if n.proc is not None and n.proc.poll() is None]
        trees = [descendants(proc.pid) for proc in running]
        for proc, tree in zip(running, trees, strict=True):
            for pid, start in tree:
                _signal_if_same(pid, start, signal.SIGTERM)
                _signal_if_same(pid, start, signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
                proc.send_signal(signal.SIGCONT)  # a stopped sshd must run to see SIGTERM
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        while time.monotonic() < deadline and any(
            start_time(pid) == start for tree in trees for pid, start in tree
        ):
            time.sleep(0.05)
        for tree in trees:
            for pid, start in tree:
                _signal_if_same(pid, start, signal.SIGKILL)
        for node in self._nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.wait(timeout=timeout)

    def close(self) -> None:
        """Terminate every sshd (and what its sessions still run), bounded; then SIGKILL."""
        self._terminate_all()

    def __enter__(self) -> SshdCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SshdCluster({self.addresses}, port={self.port}, base_dir={self.base_dir})"


class _PortTaken(RuntimeError):
    """An sshd could not bind its address and port."""


def cluster_args(cluster: SshdCluster) -> list[str]:
    """sshrun's arguments for every node of ``cluster`` (its hostfile and ssh_config)."""
    return ["-H", str(cluster.hostfile), "--ssh-config", str(cluster.ssh_config)]
