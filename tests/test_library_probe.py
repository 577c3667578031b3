"""sshrun.library_probe: asyncssh's look for liboqs without ten processes, same answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sshrun import library_probe


def _cache(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "ld.so.cache"
    path.write_bytes(content)
    return str(path)


def test_a_library_in_the_loader_cache_may_exist(tmp_path: Path) -> None:
    cache = _cache(tmp_path, b"glibc-ld.so.cache1.1\0liboqs.so.5\0/usr/lib/liboqs.so.5\0")
    assert library_probe.might_exist("oqs", cache, {}, ())
    # "liboqs" asks for libliboqs.*, which that cache does not hold.
    assert not library_probe.might_exist("liboqs", cache, {}, ())


@pytest.mark.parametrize("variable", ["LD_LIBRARY_PATH", "LIBRARY_PATH"])
def test_a_library_on_a_search_path_may_exist(tmp_path: Path, variable: str) -> None:
    cache = _cache(tmp_path, b"libc.so.6\0")
    lib = tmp_path / "opt" / "lib"
    lib.mkdir(parents=True)
    assert not library_probe.might_exist("oqs", cache, {variable: f"/nowhere:{lib}"}, ())
    (lib / "liboqs.so.0.12.0").write_bytes(b"")
    assert library_probe.might_exist("oqs", cache, {variable: f"/nowhere:{lib}"}, ())


def test_a_library_in_a_default_directory_may_exist(tmp_path: Path) -> None:
    cache = _cache(tmp_path, b"libc.so.6\0")
    (tmp_path / "liboqs.a").write_bytes(b"")  # even a static one: gcc would report it
    assert library_probe.might_exist("oqs", cache, {}, (str(tmp_path),))
    assert not library_probe.might_exist("oqs", cache, {}, (str(tmp_path / "none"),))


def test_without_a_loader_cache_find_library_is_asked(tmp_path: Path) -> None:
    assert library_probe.might_exist("oqs", str(tmp_path / "missing"), {}, ())


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_asyncssh_imported_through_sshrun_runs_no_process_for_liboqs() -> None:
    if library_probe.might_exist("oqs") or library_probe.might_exist("liboqs"):
        pytest.fail("this machine has a liboqs (or a file named like one): the quick "
                    "answer cannot be tested here")
    code = ("import subprocess\n"
            "def refuse(*a, **k): raise AssertionError(f'a process: {a!r}')\n"
            "subprocess.Popen = refuse\n"
            "import ctypes.util, sshrun\n"
            "print(ctypes.util.find_library('oqs'), ctypes.util.find_library('liboqs'))\n")
    assert _python(code) == "None None"


def test_the_answers_are_those_of_find_library_itself() -> None:
    # asyncssh ends up with the same key exchanges either way; other names are untouched.
    probe = ("import ctypes.util, asyncssh.crypto.pq as pq; "
             "print(pq.sntrup_available, pq.mlkem_available, ctypes.util.find_library('c'))")
    assert _python("import sshrun; " + probe) == _python(probe)
    assert _python("import sshrun, ctypes.util; print(ctypes.util.find_library('c'))") \
        .startswith("libc.so")


def test_installing_twice_wraps_once() -> None:
    assert _python("import sshrun, ctypes.util; from sshrun import library_probe; "
                   "first = ctypes.util.find_library; library_probe.install(); "
                   "print(ctypes.util.find_library is first)") == "True"
