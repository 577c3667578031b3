"""``sshrun check`` on one node: what the agent's hello does not say, as one JSON line.

The head runs this file's source as an exec job (``PYTHON -c SOURCE ARGS``,
argv over the agent's stdin like any exec command), under the interpreter the
job would use, so that it sees what a job would see. ``ARGS`` is a JSON
object: ``node`` (this node's rank), ``nodes``, ``addr`` and ``port`` (node
0's address as the head knows it, and a port free there: the static
rendezvous endpoint), ``timeout`` (seconds for the network check),
``workdir``, ``python``, ``nccl`` (ask torch for NCCL's version), and
``collective`` (seconds for an all_reduce, 0: none).

It prints one JSON object on stdout: the login user, the free disk, the GPUs
(``nvidia-smi``; None when it is absent), the network check and, when asked,
the collective's time and bandwidth. Every outside program and connection is
bounded by a timeout, so the head always hears back.

Network: node 0 listens on ``port`` and waits for the others' hellos; every
other node connects (retrying a refusal, since node 0 may not listen yet)
until ``timeout``. A node that cannot is reported with the address it tried.
The collective then uses the same port for torch's TCP store, as a static
rendezvous would.

Standard library only, Python 3.8; torch only for NCCL's version (in a
subprocess, with a timeout: importing torch may take seconds) and for the
collective.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time

GPU_FIELDS = "index,name,memory.total,memory.used,uuid"
APP_FIELDS = "gpu_uuid,pid,used_memory"
SMI_TIMEOUT = 10.0
NCCL_TIMEOUT = 60.0
COMMAND_MAX = 200


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _owner(pid: int) -> str | None:
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _command(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:COMMAND_MAX]


def _smi(query: str, fields: str) -> list[list[str]]:
    out = subprocess.run(
        ["nvidia-smi", "--query-" + query + "=" + fields, "--format=csv,noheader,nounits"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=SMI_TIMEOUT, check=False)
    if out.returncode != 0:
        last = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"nvidia-smi exited {out.returncode}: "
                           f"{last[-1] if last else 'no output'}")
    return [[cell.strip() for cell in line.split(",")]
            for line in out.stdout.decode("utf-8", "replace").splitlines() if line.strip()]


def _number(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def gpus() -> dict[str, object]:
    """The GPUs and what uses them; ``gpus`` None when there is no nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return {"gpus": None, "gpu_error": None}
    try:
        rows = _smi("gpu", GPU_FIELDS)
        apps = _smi("compute-apps", APP_FIELDS)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"gpus": None, "gpu_error": str(exc)[:300]}
    found = []
    by_uuid = {}
    for row in rows:
        if len(row) < 5:
            continue
        gpu: dict[str, object] = {
            "index": _number(row[0]), "model": row[1], "memory_mib": _number(row[2]),
            "used_mib": _number(row[3]), "processes": []}
        by_uuid[row[4]] = gpu
        found.append(gpu)
    for app in apps:
        if len(app) < 3 or app[0] not in by_uuid:
            continue
        pid = _number(app[1])
        processes = by_uuid[app[0]]["processes"]
        assert isinstance(processes, list)
        processes.append({"pid": pid, "used_mib": _number(app[2]),
                          "owner": _owner(pid) if pid is not None else None,
                          "command": _command(pid) if pid is not None else None})
    return {"gpus": found, "gpu_error": None}


def free_disk(workdir: str | None) -> tuple[str, int | None]:
    """Free bytes (for this user) where the job would run: the working directory, else home.

    A working directory that --sync has yet to make counts at its nearest existing parent.
    """
    path = os.path.abspath(os.path.expanduser(workdir)) if workdir else os.getcwd()
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        path = os.path.expanduser("~")
    try:
        st = os.statvfs(path)
    except OSError:
        return path, None
    return path, st.f_bavail * st.f_frsize


def nccl_version(python: str) -> str | None:
    """NCCL's version as torch reports it; importing torch costs seconds, hence a subprocess."""
    code = ("import torch, sys\n"
            "v = torch.cuda.nccl.version()\n"
            "print('.'.join(map(str, v)) if isinstance(v, tuple) else v)\n")
    try:
        out = subprocess.run([python, "-c", code], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=NCCL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.decode("utf-8", "replace").strip()
    return text or None if out.returncode == 0 else None


def listen(port: int, peers: int, deadline: float) -> dict[str, object]:
    """Node 0: accept the others' hellos until all came or the deadline passed."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("", port))
        server.listen(max(peers, 1))
    except OSError as exc:
        server.close()
        return {"ok": False, "error": f"cannot listen on port {port}: {exc.strerror}"}
    heard: list[str] = []
    try:
        while len(heard) < peers:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            server.settimeout(left)
            try:
                conn, _ = server.accept()
            except OSError:  # the deadline (socket.timeout), or the listener broke
                break
            with conn:
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                try:
                    name = conn.recv(64).decode("ascii", "replace").strip()
                    conn.sendall(b"ok\n")
                    # The client closes first: its side keeps TIME_WAIT, and the
                    # port stays free for torch's store.
                    conn.recv(1)
                except OSError:
                    continue
                heard.append(name)
    finally:
        server.close()
    return {"ok": True, "heard": len(heard)}


def connect(node: int, addr: str, port: int, deadline: float) -> dict[str, object]:
    """Any other node: reach node 0 before the deadline; a refusal may only mean 'not yet'."""
    tried = f"{addr}:{port}"
    start = time.monotonic()
    last = "timed out"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return {"ok": False, "address": tried, "error": last}
        try:
            with socket.create_connection((addr, port), timeout=min(left, 2.0)) as sock:
                sock.settimeout(max(deadline - time.monotonic(), 0.1))
                sock.sendall(b"%d\n" % node)
                if sock.recv(3) != b"ok\n":
                    raise OSError("no answer from node 0")
                return {"ok": True, "address": tried,
                        "seconds": round(time.monotonic() - start, 4)}
        except OSError as exc:
            # socket.timeout is an OSError on Python 3.8 too (TimeoutError from 3.10).
            if isinstance(exc, socket.timeout):
                last = "timed out"
                continue
            last = exc.strerror or str(exc)
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))


def collective(node: int, nodes: int, addr: str, port: int, seconds: float,
               gpus_here: bool) -> dict[str, object]:
    """A short all_reduce across every node (one process each): its time and bandwidth."""
    import datetime

    start = time.monotonic()
    try:
        import torch
        import torch.distributed as dist
    except Exception as exc:  # a torch that does not import is a result, not a crash
        return {"ok": False, "error": f"cannot import torch: {exc}"}
    backend = "nccl" if gpus_here and torch.cuda.is_available() else "gloo"
    try:
        dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}",
                                rank=node, world_size=nodes,
                                timeout=datetime.timedelta(seconds=seconds))
        device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
        data = torch.ones(1 << 20, dtype=torch.float32, device=device)  # 4 MiB
        dist.all_reduce(data)  # the first one sets up the connections
        if backend == "nccl":
            torch.cuda.synchronize()
        rounds = 5
        began = time.perf_counter()
        for _ in range(rounds):
            dist.all_reduce(data)
        if backend == "nccl":
            torch.cuda.synchronize()
        took = (time.perf_counter() - began) / rounds
        correct = float(data[0].item()) == float(nodes ** (rounds + 1))
        dist.destroy_process_group()
    except Exception as exc:
        return {"ok": False, "backend": backend, "error": str(exc).splitlines()[0][:300]
                if str(exc) else type(exc).__name__}
    size = data.numel() * data.element_size()
    # Bus bandwidth as nccl-tests define it for all_reduce: 2(n-1)/n of the data per rank.
    bus = size * 2 * (nodes - 1) / nodes / took if took > 0 else 0.0
    return {"ok": correct, "backend": backend, "seconds": round(took, 6),
            "bytes": size, "bus_bandwidth": bus, "total_seconds":
            round(time.monotonic() - start, 3),
            "error": None if correct else "all_reduce gave a wrong sum"}


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    node, nodes = int(args["node"]), int(args["nodes"])
    workdir = args.get("workdir")
    path, free = free_disk(workdir)
    result: dict[str, object] = {"user": _user(), "disk_path": path, "free_bytes": free,
                                 "time": time.time()}
    result.update(gpus())
    if args.get("nccl"):
        result["nccl_version"] = nccl_version(str(args.get("python") or sys.executable))
    deadline = time.monotonic() + float(args["timeout"])
    if nodes > 1:
        if node == 0:
            result["network"] = listen(int(args["port"]), nodes - 1, deadline)
        else:
            result["network"] = connect(node, str(args["addr"]), int(args["port"]), deadline)
    seconds = float(args.get("collective") or 0)
    network = result.get("network")
    if seconds > 0 and (not isinstance(network, dict) or network.get("ok")):
        result["collective"] = collective(node, nodes, str(args["addr"]), int(args["port"]),
                                          seconds, bool(result.get("gpus")))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
