"""sshrun.head_cache: whole copies or none, the newest kept, no error ever."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshrun import head_cache, ssh_config


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    yield tmp_path


def test_a_stored_body_is_read_back(home: Path) -> None:
    assert head_cache.load("k", "a") is None
    head_cache.store("k", "a", b"body", keep=4)
    assert head_cache.load("k", "a") == b"body"
    assert (home / "sshrun" / "k" / "a").read_bytes()[32:] == b"body"
    head_cache.store("k", "a", b"other", keep=4)
    assert head_cache.load("k", "a") == b"other"
    assert [p.name for p in (home / "sshrun" / "k").iterdir()] == ["a"]  # no temporary left


def test_a_torn_or_foreign_file_reads_as_absent(home: Path) -> None:
    head_cache.store("k", "a", b"x" * 100, keep=4)
    path = home / "sshrun" / "k" / "a"
    path.write_bytes(path.read_bytes()[:-1])
    assert head_cache.load("k", "a") is None
    path.write_bytes(b"short")
    assert head_cache.load("k", "a") is None


def test_only_the_newest_are_kept_and_a_touch_keeps_one(home: Path) -> None:
    for k in range(5):
        head_cache.store("k", f"f{k}", b"v", keep=3)
        os.utime(home / "sshrun" / "k" / f"f{k}", (k, k))  # mtimes in order, none equal
    assert head_cache.touch("k", "f2")  # now the newest
    assert not head_cache.touch("k", "missing")
    head_cache.store("k", "f5", b"v", keep=3)
    assert sorted(p.name for p in (home / "sshrun" / "k").iterdir()) == ["f2", "f4", "f5"]


def test_a_cache_that_cannot_be_written_is_no_error(home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = home / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    head_cache.store("k", "a", b"v", keep=3)
    assert head_cache.load("k", "a") is None and not head_cache.touch("k", "a")


def test_the_ssh_config_verdict_is_read_from_the_cache(home: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert ssh_config._sources_known()  # computed, and stored
    key = ssh_config._files_key()
    assert head_cache.load("ssh", key) == b"1"

    def no_reading() -> dict[str, str]:
        raise AssertionError("the sources were read again")

    monkeypatch.setattr(ssh_config, "_sources", no_reading)
    assert ssh_config._sources_known()
    # The stored verdict is what decides while the files are as they were ...
    head_cache.store("ssh", key, b"0", keep=4)
    assert not ssh_config._sources_known()
    # ... and a change to them (a new key) reads the sources again.
    monkeypatch.setattr(ssh_config, "_files_key", lambda: "f" * 32)
    with pytest.raises(AssertionError, match="read again"):
        ssh_config._sources_known()
