"""ruff and mypy are part of the test suite, so that the README's test command runs them."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from head import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_ruff_clean() -> None:
    result = _run("ruff", "check", "sshrun", "tests", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = _run("mypy", "sshrun")
    assert result.returncode == 0, result.stdout + result.stderr


def test_head_never_imports_torch() -> None:
    code = ("import sys, sshrun.cli, sshrun.supervisor, sshrun.local_cluster; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.stdout.strip() == "False", result.stderr


def test_agent_is_standard_library_only() -> None:
    """The agent ships itself to nodes that have no sshrun and maybe no asyncssh."""
    code = ("import sys; before = set(sys.modules); import sshrun.agent; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new - set(sys.stdlib_module_names) - {'sshrun'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


# -- what the head ships to the nodes ------------------------------------------------------

def _shipped() -> dict[str, str]:
    """Every text that runs on a node, by a name for messages: the parts as files, the
    scripts as the agent writes them, the bundle and the bootstrap."""
    from sshrun import agent

    texts = {f"sshrun/node/{part}.py": agent.source(part)
             for part in {*agent.MODULES, *(p for ps in agent.SCRIPTS.values() for p in ps),
                          *agent.EXEC_PARTS}}
    texts.update(_bundle_contents()[1])
    texts["BUNDLE"] = agent.BUNDLE.decode()
    texts["BOOTSTRAP"] = agent.BOOTSTRAP
    return texts


def _bundle_contents() -> tuple[dict[str, str], dict[str, str]]:
    """The modules and the scripts that ``sshrun.agent.BUNDLE`` carries, read from its text."""
    import ast

    from sshrun import agent

    values = {}
    for node in ast.parse(agent.BUNDLE).body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in ("_MODULES", "_SCRIPTS")):
            values[node.targets[0].id] = dict(ast.literal_eval(node.value))
    return values["_MODULES"], values["_SCRIPTS"]


def _runtime_imports(text: str) -> set[str]:
    """Modules a source imports when it runs (``if TYPE_CHECKING:`` blocks left out)."""
    import ast

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(text))
    return found


def test_the_bundle_holds_exactly_the_declared_parts() -> None:
    """What the node runs is the files in sshrun/node: all of them, each once, as they are."""
    from sshrun import agent

    modules, scripts = _bundle_contents()
    assert list(modules) == [f"sshrun.node.{part}" for part in agent.MODULES]
    for part in agent.MODULES:
        assert modules[f"sshrun.node.{part}"] == agent.source(part)
    assert set(scripts) == set(agent.SCRIPTS) == {"sshrun_rank.py", "sshrun_torchrun.py"}
    for name, parts in agent.SCRIPTS.items():
        assert scripts[name] == "\n".join(agent.source(p) for p in parts)
    files = {p.stem for p in (REPO / "sshrun" / "node").glob("*.py")} - {"__init__"}
    used = [*agent.MODULES, *(p for parts in agent.SCRIPTS.values() for p in parts),
            *agent.EXEC_PARTS]
    assert files == set(used), "a file in sshrun/node that is not shipped, or one missing"


def test_shipped_files_are_python_3_8_syntax() -> None:
    import ast

    for name, text in _shipped().items():
        try:
            ast.parse(text, filename=name, feature_version=(3, 8))
        except SyntaxError as exc:
            raise AssertionError(f"{name} is not Python 3.8: {exc}") from None


def test_shipped_files_import_only_the_standard_library() -> None:
    """The agent's parts import the standard library and the parts shipped before them;
    the scripts, the standard library (and the wrapper torch, which the nodes have)."""
    from sshrun import agent

    stdlib = set(sys.stdlib_module_names)
    for index, part in enumerate(agent.MODULES):
        earlier = {f"sshrun.node.{p}" for p in agent.MODULES[:index]}
        for module in _runtime_imports(agent.source(part)):
            assert module.split(".")[0] in stdlib or module in earlier, (
                f"sshrun/node/{part}.py imports {module}")
    for name, text in _bundle_contents()[1].items():
        allowed = {"torch"} if name == "sshrun_torchrun.py" else set()
        for module in _runtime_imports(text):
            assert module.split(".")[0] in stdlib | allowed, f"{name} imports {module}"
    for part in agent.EXEC_PARTS:  # run as commands, under the job's interpreter
        for module in _runtime_imports(agent.source(part)):
            assert module.split(".")[0] in stdlib | {"torch"}, f"{part}.py imports {module}"


def _python_3_8() -> str:
    import glob
    import shutil

    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3")))
    path = found[0] if found else shutil.which("python3.8")
    assert path, "no Python 3.8 on this machine to load the agent's bundle with"
    return path


def test_the_bundle_loads_and_speaks_on_python_3_8() -> None:
    """Under a real 3.8: every module of the bundle runs, a message round-trips, and the
    scripts compile."""
    from sshrun import agent

    check = (
        "import json, sys\n"
        "bundle = sys.stdin.read()\n"
        "scope = {'__name__': 'sshrun_agent'}\n"
        "exec(compile(bundle, '<bundle>', 'exec'), scope)\n"
        "assert callable(scope['main'])\n"
        "p = sys.modules['sshrun.node.protocol']\n"
        "wire = {'type': 'exited', 'code': 1, 'failures': {'3': {'exitcode': -9}},"
        " 'swept': {'left': 0}, 'new': 1}\n"
        "event = p.decode(json.loads(json.dumps(wire)), p.EVENTS)\n"
        "assert event.failures[3].exitcode == -9, event\n"
        "assert p.decode(event.to_dict(), p.EVENTS) == event\n"
        "assert p.Heartbeat().to_dict() == {'type': 'hb'}\n"  # TYPE is no field on 3.8 either
        "for name, text in scope['_SCRIPTS']:\n"
        "    compile(text, name, 'exec')\n"
        "print('ok', sys.version_info[:2])\n"
    )
    result = subprocess.run([_python_3_8(), "-c", check], input=agent.BUNDLE.decode(),
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok (3, 8)", result.stdout + result.stderr


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reaches(source: str) -> list[str]:
    """Where a module uses another sshrun module's private names (``_x``)."""
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to sshrun modules
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sshrun"):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                elif node.module == "sshrun":
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sshrun.") and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and _private(node.attr)):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_private_reaches_finds_both_forms() -> None:
    source = ("from sshrun import hostfile as _h\nfrom sshrun.plan import _x, y\n"
              "_h._parse_line('a', 0)\n_h.parse_host_entry('a')\n")
    assert private_reaches(source) == [
        "line 2: from sshrun.plan import _x", "line 3: _h._parse_line"]


def test_no_module_uses_another_modules_private_names() -> None:
    """Modules talk through public functions (hostfile.parse_host_entry, not _parse_line)."""
    found = {path.name: private_reaches(path.read_text())
             for path in sorted((REPO / "sshrun").glob("*.py"))}
    assert {name: where for name, where in found.items() if where} == {}


# -- the import graph ------------------------------------------------------------------


def _module_names() -> dict[str, str]:
    """Every module of the sshrun package, by dotted name, and its source."""
    found = {}
    for path in sorted((REPO / "sshrun").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path.read_text()
    return found


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Which of ``sources``' modules each one imports: every import counts, at the top,
    inside a function, and under ``if TYPE_CHECKING:`` (a type-only import is still a
    dependency, and the start of a circle that a later runtime import would close)."""
    graph: dict[str, set[str]] = {}
    for name, text in sources.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in sources)
            elif isinstance(node, ast.ImportFrom):
                # sshrun imports absolutely; a relative import would hide from this graph.
                assert node.level == 0, f"{name}, line {node.lineno}: a relative import"
                base = node.module or ""
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in sources:
                        deps.add(full)  # from sshrun import events: the module
                    elif base in sources:
                        deps.add(base)  # from sshrun.plan import plan_job
        deps.discard(name)
        graph[name] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports, each sorted."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, ()))
        reach[start] = seen
    cycles = {tuple(sorted(m for m in reach[v] if v in reach[m])) for v in graph if v in reach[v]}
    return sorted(list(c) for c in cycles)


def test_import_cycles_finds_type_only_and_function_level_ones() -> None:
    sources = {
        "sshrun.a": "from sshrun.b import X\n",
        "sshrun.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from sshrun import a\n",
        "sshrun.c": "import sshrun.a\n\ndef f():\n    from sshrun.d import y\n",
        "sshrun.d": "from sshrun import c\n",
        "sshrun.e": "from sshrun import a, b\n",
    }
    assert import_cycles(import_graph(sources)) == [["sshrun.a", "sshrun.b"],
                                                    ["sshrun.c", "sshrun.d"]]
    del sources["sshrun.b"], sources["sshrun.d"]
    assert import_cycles(import_graph(sources)) == []


def test_sshrun_modules_import_no_circle() -> None:
    """The modules form layers: none imports, even for types only, one that imports it."""
    graph = import_graph(_module_names())
    assert "sshrun.failure" in graph["sshrun.result"]  # it does see sshrun's imports
    assert import_cycles(graph) == []


def _yaml_modules_after(argv: list[str]) -> str:
    code = ("import sys, sshrun.cli, sshrun.launcher\n"
            "try:\n"
            f"    sshrun.cli.parse_invocation({argv!r}, {{}})\n"
            "except sshrun.errors.SshrunError as exc:\n"
            "    print(exc, file=sys.stderr)\n"
            "print(sorted(m for m in sys.modules if m == 'yaml' or m.startswith(('yaml.', "
            "'sshrun.cluster_yaml', 'sshrun.yaml'))))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_run_without_a_config_file_never_imports_yaml(tmp_path: Path) -> None:
    """PyYAML and the config schema cost every start-up ~20 ms; only -c needs them."""
    assert _yaml_modules_after(["--hosts", "a,b", "train.py"]) == "[]"
    config = tmp_path / "cluster.yaml"
    config.write_text("hosts: [a, b]\n")
    loaded = _yaml_modules_after(["-c", str(config), "train.py"])
    assert "'yaml'" in loaded and "'sshrun.cluster_yaml'" in loaded
