"""What the agents' hellos say (sshrun/node/probe.py) and the checks over all of them
before anything starts (sshrun/preflight.py); the rendezvous backends' table
(sshrun/rendezvous.py). Pure, apart from the probe's reads of a fake torch and
a run of the real agent's hello on this machine.

The same refusal against real sshd nodes, a real etcd and an interpreter
without python-etcd is in tests/test_etcd.py.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshrun import errors, rendezvous
from sshrun.hostfile import HostSpec
from sshrun.node import probe, protocol
from sshrun.node.protocol import EVENTS, PROTOCOL_VERSION, Hello, Preflight, ProtocolError
from sshrun.plan import JobConfig
from sshrun.preflight import NodeHello, Problem, check_hellos, refusal, version_mismatch


def hello(python: str = "/usr/bin/python3", torch_version: str | None = "2.13.0",
          **modules: bool) -> Hello:
    return Hello(version=PROTOCOL_VERSION, pid=1, hostname="n", python=python,
                 python_version="3.8.18", torch=torch_version is not None, free_port=29500,
                 cwd="/", torch_version=torch_version, cuda_version="12.6", modules=modules)


def job(backend: str, mode: str = "torchrun", allow: bool = False) -> JobConfig:
    return JobConfig(hosts=(HostSpec("a"), HostSpec("b")), target=("t.py",),
                     mode=mode, rdzv_backend=backend,  # type: ignore[arg-type]
                     allow_version_mismatch=allow)


# -- the backends' table -----------------------------------------------------------------


def test_every_backend_torchrun_knows_is_in_the_table() -> None:
    assert rendezvous.NAMES == ("static", "c10d", "etcd", "etcd-v2")
    assert rendezvous.CLIENT_MODULES == ("etcd", "urllib3")
    assert rendezvous.expected() == "static, c10d, etcd or etcd-v2"


def test_what_each_backend_needs_matches_torchs_imports() -> None:
    """torch's etcd backends import python-etcd (and etcd-v2 urllib3) by these names."""
    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.origin is not None
    folder = Path(spec.origin).parent
    sources = {
        "etcd": ["etcd_rendezvous.py", "etcd_store.py"],
        "etcd-v2": ["etcd_rendezvous_backend.py", "etcd_store.py"],
    }
    for name, files in sources.items():
        text = "".join((folder / "distributed/elastic/rendezvous" / f).read_text()
                       for f in files)
        for module in rendezvous.backend(name).modules:
            assert f"import {module.name}" in text, (name, module)
    assert not rendezvous.backend("c10d").modules and not rendezvous.backend("static").modules
    assert [rendezvous.backend(n).default_port for n in rendezvous.NAMES] == [
        29400, 29400, 2379, 2379]


# -- the checks over every hello ---------------------------------------------------------


def versions(*pairs: tuple[str, str | None]) -> list[NodeHello]:
    return [NodeHello(host, hello(torch_version=v)) for host, v in pairs]


def test_a_node_whose_torch_is_not_node_0s_is_refused_naming_both_versions() -> None:
    hellos = versions(("node0", "2.13.0"), ("node1", "2.12.0"), ("node2", "2.13.0"))
    problems = check_hellos(hellos, job("static"))
    assert problems == [Problem("node1", (
        "torch 2.12.0, but node 0 (node0) has torch 2.13.0 (every node needs the same "
        "torch; --allow-version-mismatch launches anyway)"))]
    error = refusal(problems)
    assert error.exit_code == errors.EXIT_USAGE
    assert str(error) == ("node1: torch 2.12.0, but node 0 (node0) has torch 2.13.0 (every "
                          "node needs the same torch; --allow-version-mismatch launches anyway)")


def test_many_mismatched_nodes_fold_into_hostlists_per_version() -> None:
    hellos = versions(("node01", "2.13.0"), *((f"node{k:02d}", "2.12.0") for k in (2, 3, 4)),
                      ("node05", "2.13.0"), ("node06", "2.11.0"), ("node07", "2.12.0"))
    mismatch = version_mismatch(hellos)
    assert mismatch is not None
    assert mismatch.hosts == ("node02", "node03", "node04", "node07", "node06")
    assert str(refusal(check_hellos(hellos, job("static")))) == (
        "node[02-04,06-07]: torch 2.12.0 on node[02-04,07], 2.11.0 on node06, but node 0 "
        "(node01) has torch 2.13.0 (every node needs the same torch; "
        "--allow-version-mismatch launches anyway)")


def test_exec_jobs_are_guarded_too_and_unknown_versions_are_not_compared() -> None:
    hellos = versions(("a", "2.13.0"), ("b", "2.12.0"))
    assert [p.host for p in check_hellos(hellos, job("static", mode="exec"))] == ["b"]
    # No torch on a node (exec needs none), or none on node 0: nothing to compare.
    assert version_mismatch(versions(("a", "2.13.0"), ("b", None))) is None
    assert version_mismatch(versions(("a", None), ("b", "2.12.0"))) is None
    assert version_mismatch(versions(("a", "2.13.0+cpu"), ("b", "2.13.0+cpu"))) is None
    assert version_mismatch([]) is None


def test_allow_version_mismatch_lets_the_launch_go_on() -> None:
    hellos = versions(("a", "2.13.0"), ("b", "2.12.0"))
    assert check_hellos(hellos, job("static", allow=True)) == []
    assert check_hellos(hellos, job("static", mode="exec", allow=True)) == []
    # Other problems are still refused.
    etcd = [NodeHello("a", hello(etcd=True, urllib3=True)),
            NodeHello("b", hello(torch_version="2.12.0", etcd=False, urllib3=True))]
    assert [p.host for p in check_hellos(etcd, job("etcd", allow=True))] == ["b"]


def test_a_version_with_escapes_is_sanitized_in_the_line() -> None:
    hellos = versions(("a", "2.13.0"), ("b", "2.12.0\x1b[2J\u202e"))
    assert "\x1b" not in str(refusal(check_hellos(hellos, job("static"))))


def test_a_node_without_python_etcd_is_one_problem_naming_it() -> None:
    hellos = [NodeHello("n1", hello(etcd=True, urllib3=True)),
              NodeHello("127.0.0.3", hello(etcd=False, urllib3=True))]
    assert check_hellos(hellos, job("etcd")) == [Problem(
        "127.0.0.3", "--rdzv-backend etcd needs the Python module 'etcd' "
                     "(pip install python-etcd) in /usr/bin/python3")]
    error = refusal(check_hellos(hellos, job("etcd")))
    assert isinstance(error, errors.NodeSetupError) and error.exit_code == errors.EXIT_USAGE
    assert str(error) == ("127.0.0.3: --rdzv-backend etcd needs the Python module 'etcd' "
                          "(pip install python-etcd) in /usr/bin/python3")


def test_etcd_v2_names_every_module_it_lacks_and_the_other_nodes() -> None:
    hellos = [NodeHello("n1", hello("/opt/py", etcd=False, urllib3=False)),
              NodeHello("n2", hello(etcd=False, urllib3=True)),
              NodeHello("n3", hello(etcd=True, urllib3=True))]
    problems = check_hellos(hellos, job("etcd-v2"))
    assert [p.host for p in problems] == ["n1", "n2"]
    assert str(refusal(problems)) == (
        "n1: --rdzv-backend etcd-v2 needs the Python modules 'etcd' and 'urllib3' "
        "(pip install python-etcd urllib3) in /opt/py (and 1 more: n2)")


@pytest.mark.parametrize("backend", ["static", "c10d"])
def test_backends_without_a_client_need_nothing(backend: str) -> None:
    hellos = [NodeHello("n1", hello(etcd=False, urllib3=False))]
    assert check_hellos(hellos, job(backend)) == []


def test_exec_and_modules_not_asked_about_are_no_problem() -> None:
    assert check_hellos([NodeHello("n1", hello(etcd=False))], job("etcd", mode="exec")) == []
    # An agent that was not asked (a head without the table's modules) is not refused.
    assert check_hellos([NodeHello("n1", hello())], job("etcd")) == []


def test_the_interpreter_in_the_line_is_sanitized() -> None:
    problems = check_hellos([NodeHello("n1", hello("/opt/\x1b[2Jpy", etcd=False))],
                            job("etcd"))
    assert "\x1b" not in problems[0].message and problems[0].message.endswith(" in /opt/py")


# -- the hello's shape -------------------------------------------------------------------


def test_the_hello_with_versions_and_modules_round_trips() -> None:
    message = hello(etcd=True, urllib3=False)
    wire = json.loads(json.dumps(message.to_dict()))
    assert wire["modules"] == {"etcd": True, "urllib3": False}
    assert (wire["torch_version"], wire["cuda_version"]) == ("2.13.0", "12.6")
    assert protocol.decode(wire, EVENTS) == message
    assert Preflight.from_dict({"type": "preflight", "modules": ["etcd"]}).modules == ("etcd",)


def test_modules_that_are_not_booleans_are_refused() -> None:
    wire = hello().to_dict() | {"modules": {"etcd": "yes"}}
    with pytest.raises(ProtocolError, match="'modules' is not an object of booleans"):
        protocol.decode(wire, EVENTS)


# -- the probe ---------------------------------------------------------------------------


def use_fake_torch(root: Path, version_py: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``torch`` package first on the path, that raises when imported."""
    package = root / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the probe must not import torch')\n")
    if version_py is not None:
        (package / "version.py").write_text(version_py)
    monkeypatch.syspath_prepend(str(root))
    # find_spec answers from sys.modules first: a torch imported earlier in the session.
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    importlib.invalidate_caches()


@pytest.mark.parametrize(("text", "expected"), [
    ("from typing import Optional\n__version__ = '2.5.1+cu124'\ndebug = False\n"
     "cuda: Optional[str] = '12.4'\ngit_version = 'abc'\n", ("2.5.1+cu124", "12.4")),
    ('__version__ = "2.13.0+cpu"\ncuda = None\n', ("2.13.0+cpu", None)),
    ("__version__ = '1.13.1'\ncuda: Optional[str] = None  # no CUDA\n", ("1.13.1", None)),
])
def test_torch_versions_come_from_its_version_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  text: str, expected: tuple[str, str]) -> None:
    use_fake_torch(tmp_path, text, monkeypatch)
    # Its __init__ raises: had the probe imported it, it would see no torch at all.
    assert probe.torch_versions() == (True, *expected)


def test_torch_without_a_version_file_asks_its_distribution(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_torch(tmp_path, None, monkeypatch)
    # No dist-info of its own here: the installed torch's record answers, or nothing.
    try:
        installed: str | None = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    assert probe.torch_versions() == (True, installed, None)


class _Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "brokenmod":
            raise RuntimeError("a half-installed package's import hook")
        return None


def test_a_module_whose_finder_breaks_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [_Broken(), *sys.meta_path])
    assert probe.has_modules(["brokenmod", "json", "no_such_module_x"]) == {
        "brokenmod": False, "json": True, "no_such_module_x": False}


def test_the_real_hello_imports_neither_torch_nor_the_modules() -> None:
    """The probe, run as the agent runs it: nothing heavy is imported to answer."""
    code = ("import sys; from sshrun.node import probe; "
            "print(probe.torch_versions()[0], probe.has_modules(['etcd', 'urllib3']), "
            "sorted(m for m in ('torch', 'etcd', 'urllib3', 'importlib.metadata') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parent.parent, check=True)
    assert done.stdout.split(" ", 1)[1].strip() == "{'etcd': True, 'urllib3': True} []", (
        done.stdout + done.stderr)


@pytest.mark.torch
def test_under_python_dash_s_the_probe_finds_torch_without_running_site(tmp_path: Path) -> None:
    """The agent runs under ``python -S``: torch and the rendezvous clients are found in
    the site directories without the .pth files' imports, and a module that only a
    .pth file puts on the path is still found (site runs then, and only then)."""
    import os
    import site

    user_site = tmp_path / "base" / Path(site.getusersitepackages()).relative_to(site.getuserbase())
    user_site.mkdir(parents=True)
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "pth_only_mod.py").write_text("")
    (user_site / "extra.pth").write_text(f"{tmp_path / 'extra'}\n")
    code = ("import sys; from sshrun.node import probe; "
            "has, version, _ = probe.torch_versions(); "
            "print(has, version, probe.has_modules(['urllib3', 'json']), "
            "probe._site_loaded, flush=True); "
            "print(probe.has_modules(['pth_only_mod', 'no_such_module_x']), "
            "probe._site_loaded)")
    env = dict(os.environ, PYTHONUSERBASE=str(tmp_path / "base"))
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parent.parent, env=env)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    import torch
    assert first == f"True {torch.__version__} {{'urllib3': True, 'json': True}} False"
    assert second == "{'pth_only_mod': True, 'no_such_module_x': False} True"


@pytest.mark.parametrize("system_site", [False, True], ids=["isolated", "system-site"])
def test_under_python_dash_s_a_virtual_environment_follows_its_own_config(
        tmp_path: Path, system_site: bool) -> None:
    """In a venv the site directories are the venv's (and the system's only with
    include-system-site-packages): the same answer as the venv's python without -S."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv),
                    *(["--system-site-packages"] if system_site else [])],
                   check=True, timeout=120)
    code = ("from sshrun.node import probe; "
            "print(probe.torch_versions()[0], probe.has_modules(['urllib3']))")
    done = subprocess.run([str(venv / "bin" / "python"), "-S", "-c", code], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{system_site} {{'urllib3': {system_site}}}"


_VERSION_LINE = st.lists(st.sampled_from(
    ["__version__", "cuda", "cuda_version", " ", "\t", ":", " Optional[str] ", "=", "==",
     "'2.5.1'", '"12.4"', "None", "  # x", "\r", "\n", "x"]), max_size=8).map("".join)


@given(st.lists(_VERSION_LINE, max_size=5).map("\n".join))
def test_the_version_file_is_read_as_the_pattern_read_it(text: str) -> None:
    # What probe reads without re, against the pattern it used, but for two flaws
    # of that pattern no Python file shows: its \s* crossed a line's end, and it
    # kept a CR inside the value (so: no CR here, and [^\S\n]* for \s*).
    import re

    text = text.replace("\r", "")
    pattern = r"^(__version__|cuda)[^\S\n]*(?::[^=\n]*)?=[ \t]*(\S.*?)[ \t]*$"
    expected = {m.group(1): probe._literal(m.group(2)) for m in re.finditer(pattern, text, re.M)}
    assert probe._assignments(text) == expected
