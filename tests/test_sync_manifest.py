"""--sync's head side, pure: the tree's manifest (excludes, secrets, symlinks, size) and diff."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sshrun.errors import ConfigError
from sshrun.sync_manifest import (
    Entry,
    SyncOptions,
    build_manifest,
    describe_skipped,
    diff,
    parse_size,
)


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_manifest_holds_paths_sizes_modes_and_hashes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    tree = build_manifest(SyncOptions(str(root)))
    assert list(tree.entries) == ["pkg", "pkg/mod.py", "run.sh", "train.py"]
    assert tree.entries["train.py"] == Entry(
        "f", 12, 0o666 & ~_umask(), hashlib.sha256(b"print('hi')\n").hexdigest())
    assert tree.entries["train.py"].size == 12
    assert tree.entries["run.sh"].mode == 0o755
    assert tree.entries["pkg"].kind == "d"
    assert tree.file_count == 3
    assert tree.total_bytes == 12 + 6 + 10


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_default_excludes_venvs_and_log_dir(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    for d in (".git", "__pycache__", "pkg/__pycache__", "venv", "logs"):
        (root / d).mkdir()
        (root / d / "f").write_text("no")
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "pkg" / "mod.pyc").write_bytes(b"\0")
    tree = build_manifest(SyncOptions(str(root), log_dir=str(root / "logs")))
    assert list(tree.entries) == ["pkg", "pkg/mod.py", "run.sh", "train.py"]


def test_sync_exclude_by_name_and_path_is_said(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"x" * 100)
    (root / "model.ckpt").write_bytes(b"y")
    tree = build_manifest(SyncOptions(str(root), excludes=("data", "*.ckpt")))
    assert "data" not in tree.entries and "data/big.bin" not in tree.entries
    assert "model.ckpt" not in tree.entries
    assert tree.excluded == ("data", "model.ckpt")
    assert "excluded (--sync-exclude): data, model.ckpt" in " ".join(describe_skipped(tree))


def test_secrets_skipped_unless_named(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    (root / ".env").write_text("TOKEN=1\n")
    (root / "pkg" / "server.pem").write_text("key\n")
    (root / "id_ed25519").write_text("key\n")
    tree = build_manifest(SyncOptions(str(root)))
    assert set(tree.skipped_secrets) == {".env", "pkg/server.pem", "id_ed25519"}
    assert not set(tree.skipped_secrets) & set(tree.entries)
    line = describe_skipped(tree)[0]
    assert ".env" in line and "--sync-include" in line
    allowed = build_manifest(SyncOptions(str(root), includes=("*.pem",)))
    assert "pkg/server.pem" in allowed.entries
    assert set(allowed.skipped_secrets) == {".env", "id_ed25519"}


def test_symlinks_inside_kept_outside_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    os.symlink("train.py", root / "alias.py")
    os.symlink("../pkg", root / "pkg" / "self")
    tree = build_manifest(SyncOptions(str(root)))
    assert tree.entries["alias.py"] == Entry("l", 0, 0, "train.py")
    assert tree.entries["pkg/self"] == Entry("l", 0, 0, "../pkg")
    os.symlink("../../outside.txt", root / "pkg" / "away")
    with pytest.raises(ConfigError, match=r"pkg/away is a symlink to \.\./\.\./outside\.txt"):
        build_manifest(SyncOptions(str(root)))
    (root / "pkg" / "away").unlink()
    os.symlink("/etc/hostname", root / "abs")
    with pytest.raises(ConfigError, match="abs is a symlink to /etc/hostname, outside"):
        build_manifest(SyncOptions(str(root)))


def test_size_limit_is_an_error_naming_the_flag(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    (root / "blob").write_bytes(b"z" * 2000)
    with pytest.raises(ConfigError, match=r"more than 1\.0 KiB.*--sync-max-size"):
        build_manifest(SyncOptions(str(root), max_size=1024))
    assert build_manifest(SyncOptions(str(root), max_size=4096)).total_bytes == 2028


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        build_manifest(SyncOptions(str(tmp_path / "train.py")))


def test_gitignore_honoured_in_a_checkout(tmp_path: Path) -> None:
    git = shutil.which("git")
    assert git is not None, "git is needed for this test (apt-get install git)"
    root = _tree(tmp_path / "src")
    (root / "out").mkdir()
    (root / "out" / "result.txt").write_text("r")
    (root / "scratch.tmp").write_text("t")
    (root / ".gitignore").write_text("out/\n*.tmp\n")
    subprocess.run([git, "init", "-q", str(root)], check=True, timeout=30)
    tree = build_manifest(SyncOptions(str(root)))
    assert "out" not in tree.entries and "out/result.txt" not in tree.entries
    assert "scratch.tmp" not in tree.entries
    assert {"train.py", "pkg/mod.py", ".gitignore"} <= set(tree.entries)


def test_diff_sends_changed_and_missing_and_lists_deleted() -> None:
    a = Entry("f", 1, 0o644, "aa")
    head = {"d": Entry("d", 0, 0o755), "d/a": a, "b": Entry("f", 2, 0o644, "bb"),
            "x": Entry("f", 3, 0o755, "cc")}
    node = {"d": Entry("d", 0, 0o755), "d/a": a, "b": Entry("f", 2, 0o644, "bX"),
            "x": Entry("f", 3, 0o644, "cc"), "gone": Entry("f", 1, 0o644, "zz")}
    delta = diff(head, node)
    assert delta.send == ("b", "x")  # content, then the executable bit
    assert delta.delete == ("gone",)
    assert not delta.same
    assert delta.send_bytes(head) == 5
    assert diff(head, dict(head)).same
    assert diff(head, {}).send == ("d/a", "b", "x")
    # A symlink's target changing sends nothing but is still a change to swap in.
    linked = {"l": Entry("l", 0, 0, "a")}
    relinked = diff(linked, {"l": Entry("l", 0, 0, "b")})
    assert relinked.send == () and not relinked.same


def test_parse_size() -> None:
    assert parse_size("1G") == 1 << 30
    assert parse_size("500M") == 500 << 20
    assert parse_size("2GiB") == 2 << 30
    assert parse_size("1024") == 1024
    with pytest.raises(ConfigError, match="--sync-max-size: 'lots' is not a size"):
        parse_size("lots")
    with pytest.raises(ConfigError, match="must be more than 0"):
        parse_size("0")
    with pytest.raises(ConfigError, match="must be more than 0"):
        parse_size("-1M")
    for endless in ("inf", "-inf", "nan", "1e400", "infG", ""):
        with pytest.raises(ConfigError, match=f"--sync-max-size: '{endless}' is not a size"):
            parse_size(endless)


def test_head_cache_round_trip_and_bad_copies(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sshrun import sync_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tree = build_manifest(SyncOptions(str(_tree(tmp_path / "src"))))
    assert sync_cache.load(tree.digest) is None
    sync_cache.store(tree.digest, tree.entries)
    assert sync_cache.load(tree.digest) == dict(tree.entries)
    assert sync_cache.load("../../etc/passwd") is None  # only digests name files
    (sync_cache.cache_dir() / f"{tree.digest}.json.z").write_bytes(b"not zlib")
    assert sync_cache.load(tree.digest) is None
    for k in range(sync_cache.KEEP + 3):
        sync_cache.store(f"{k:016x}", tree.entries)
    assert len(list(sync_cache.cache_dir().glob("*.json.z"))) == sync_cache.KEEP
