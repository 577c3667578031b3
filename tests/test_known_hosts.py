"""sshrun.known_hosts: each file read and decoded once per run, again only when it changes.

Real files and real keys (asyncssh generates them); nothing is connected.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import pytest

from sshrun.errors import ConfigError
from sshrun.known_hosts import KnownHostsFiles


def key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def line(entry: str, k: asyncssh.SSHKey) -> str:
    return f"{entry} {k.export_public_key().decode().strip()}\n"


def trusted(files: KnownHostsFiles, paths: list[str], host: str,
            port: int | None = 2222) -> list[asyncssh.SSHKey]:
    return list(files.view(paths).trusted.match(host, "", port)[0])


def test_a_file_is_decoded_once_while_it_is_unchanged(tmp_path: Path) -> None:
    k1, k2 = key(), key()
    known = tmp_path / "known_hosts"
    known.write_text(line("[n1]:2222", k1) + line("[n2]:2222", k2))
    files = KnownHostsFiles()
    first = files.view([str(known)])
    assert files.view([str(known)]).trusted is first.trusted  # not read again
    assert list(first.trusted.match("n2", "", 2222)[0]) == [k2]


def test_a_file_changed_on_disk_is_read_again(tmp_path: Path) -> None:
    k1, k2 = key(), key()
    known = tmp_path / "known_hosts"
    known.write_text(line("[n1]:2222", k1))
    files = KnownHostsFiles()
    assert trusted(files, [str(known)], "n2") == []
    known.write_text(line("[n1]:2222", k1) + line("[n2]:2222", k2))  # e.g. ssh-keyscan >>
    assert trusted(files, [str(known)], "n2") == [k2]


def test_files_are_merged_as_asyncssh_merges_them(tmp_path: Path) -> None:
    # asyncssh falls back to the entry without a port only when no file has
    # the host with its port; a merge file by file would find both keys.
    k1, k2 = key(), key()
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text(line("[n1]:2222", k1))
    second.write_text(line("n1", k2))
    files = KnownHostsFiles()
    expected = asyncssh.read_known_hosts([str(first), str(second)]).match("n1", "", 2222)[0]
    assert trusted(files, [str(first), str(second)], "n1") == list(expected) == [k1]
    # Each file apart (to name those that hold a key), as sshrun always did.
    view = files.view([str(first), str(second), str(tmp_path / "missing")])
    assert view.holding("n1", "", 2222) == [(str(first), [k1]), (str(second), [k2])]


def test_record_appends_and_updates_what_is_held(tmp_path: Path) -> None:
    k1, k2 = key(), key()
    known = tmp_path / "known_hosts"
    known.write_text(line("[n1]:2222", k1))
    files = KnownHostsFiles()
    before = files.view([str(known)])
    files.record(str(known), "[n2]:2222", k2)
    assert known.read_text() == line("[n1]:2222", k1) + line("[n2]:2222", k2)
    after = files.view([str(known)])
    assert after.trusted is before.trusted  # updated in memory, not read again
    assert list(after.trusted.match("n2", "", 2222)[0]) == [k2]
    assert after.holding("n2", "", 2222) == [(str(known), [k2])]


def test_record_into_a_new_file_creates_it(tmp_path: Path) -> None:
    k1 = key()
    known = tmp_path / "new" / "known_hosts"
    files = KnownHostsFiles()
    assert files.view([str(known)]).files == ()
    files.record(str(known), "[n1]:2222", k1)
    assert oct(known.parent.stat().st_mode & 0o777) == "0o700"
    assert trusted(files, [str(known)], "n1") == [k1]


def test_a_write_by_someone_else_between_ours_is_not_lost(tmp_path: Path) -> None:
    k1, k2, k3 = key(), key(), key()
    known = tmp_path / "known_hosts"
    known.write_text(line("[n1]:2222", k1))
    files = KnownHostsFiles()
    files.view([str(known)])
    with known.open("a") as f:
        f.write(line("[n2]:2222", k2))
    files.record(str(known), "[n3]:2222", k3)
    assert trusted(files, [str(known)], "n2") == [k2]
    assert trusted(files, [str(known)], "n3") == [k3]


def test_with_no_file_asyncssh_s_default_is_trusted(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # As asyncssh does when it is given no existing file: ~/.ssh/known_hosts.
    k1 = key()
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "known_hosts").write_text(line("[n1]:2222", k1))
    monkeypatch.setenv("HOME", str(tmp_path))
    files = KnownHostsFiles()
    view = files.view([str(tmp_path / "absent")])
    assert list(view.trusted.match("n1", "", 2222)[0]) == [k1]
    assert view.files == ()  # the configured files: none holds it


@pytest.mark.parametrize(("content", "message"), [
    (b"garbage\n", "Invalid known hosts entry: garbage"),
    (b"@bogus n1 ssh-ed25519 AAAA\n", "Invalid known hosts marker: bogus"),
])
def test_a_malformed_file_is_one_line_naming_it(tmp_path: Path, content: bytes,
                                                message: str) -> None:
    known = tmp_path / "known_hosts"
    known.write_bytes(line("[n1]:2222", key()).encode() + content)
    with pytest.raises(ConfigError) as info:
        KnownHostsFiles().view([str(known)])
    assert str(info.value) == f"known_hosts file {known}: {message}"


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_bytes(line("[n1]:2222", key()).encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        KnownHostsFiles().view([str(known)])
    assert str(info.value) == (f"known_hosts file {known} line 2: invalid UTF-8 byte 0xe9: "
                               "expected a UTF-8 text file")


def test_what_is_not_a_regular_file_is_skipped(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    view = KnownHostsFiles().view([str(fifo), str(tmp_path)])
    assert view.files == ()
