"""Tests for sshrun.hostfile: every accepted form, every error and its place."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from renderers import render_hostfile

from sshrun import configfile
from sshrun.errors import ConfigError, LocationError
from sshrun.hostfile import (
    MAX_HOSTS,
    MAX_SLOTS,
    HostEntry,
    HostEntryError,
    HostlistError,
    HostSpec,
    check_single_host,
    check_user,
    expand_host_name,
    expand_hostlist,
    host_identity,
    load_hostfile,
    parse_host_entry,
    parse_host_list,
    parse_hostfile,
)

HOSTFILES = Path(__file__).resolve().parent.parent / "hostfiles"
SRC = "hosts.txt"
FAST = settings(max_examples=300, deadline=None)


def parse(text: str) -> list[HostSpec]:
    return parse_hostfile(text, SRC)


def one(text: str) -> HostSpec:
    (spec,) = parse(text)
    return spec


def strip_where(hosts: list[HostSpec]) -> list[HostSpec]:
    return [dataclasses.replace(h, where="") for h in hosts]


# --- accepted forms ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("node01", HostSpec("node01")),
        ("node01 slots=8", HostSpec("node01", slots=8)),
        ("node01:8", HostSpec("node01", slots=8)),
        ("alice@node01", HostSpec("node01", user="alice")),
        ("alice@node01:4", HostSpec("node01", user="alice", slots=4)),
        ("[node01]:2222", HostSpec("node01", port=2222)),
        ("[node01]", HostSpec("node01")),
        ("[node01]:2222 slots=4", HostSpec("node01", port=2222, slots=4)),
        ("bob@[10.0.0.1]:22", HostSpec("10.0.0.1", user="bob", port=22)),
        ("[::1]:2222", HostSpec("::1", port=2222)),
        ("[::1]", HostSpec("::1")),
        ("[fe80::1:2]:22 slots=2", HostSpec("fe80::1:2", port=22, slots=2)),
        ("[::ffff:1.2.3.4]:22", HostSpec("::ffff:1.2.3.4", port=22)),
        ("node01 port=2222", HostSpec("node01", port=2222)),
        ("node01 user=bob", HostSpec("node01", user="bob")),
        ("node01:4 port=2222 user=bob", HostSpec("node01", user="bob", port=2222, slots=4)),
        ("node01 user=bob slots=2 port=2", HostSpec("node01", user="bob", port=2, slots=2)),
        ("node01 slots=4 max_slots=8", HostSpec("node01", slots=4)),
        ("node01 max_slots=0", HostSpec("node01")),
        ("node01:1024", HostSpec("node01", slots=1024)),
        ("node01:007", HostSpec("node01", slots=7)),
        (f"node01 slots={MAX_SLOTS}", HostSpec("node01", slots=MAX_SLOTS)),
        ("node01 port=65535", HostSpec("node01", port=65535)),
        ("10.0.0.1:2", HostSpec("10.0.0.1", slots=2)),
        ("Node_1.example.com", HostSpec("Node_1.example.com")),
        ("a.b-c_d@h", HostSpec("h", user="a.b-c_d")),
        ("  \tnode01 \t slots=2  ", HostSpec("node01", slots=2)),
        ("node01 # a comment", HostSpec("node01")),
        ("node01#comment right after", HostSpec("node01")),
        ("node01 slots=2# comment", HostSpec("node01", slots=2)),
        ("[1-3]", HostSpec("1-3")),
    ],
)
def test_accepted_forms(text: str, expected: HostSpec) -> None:
    assert strip_where([one(text)]) == [expected]


def test_where_names_file_and_line() -> None:
    hosts = parse("# head\n\nnode01\n   \nnode02 slots=2\n")
    assert [h.where for h in hosts] == ["hosts.txt:3", "hosts.txt:5"]


def test_blank_and_comment_only_text_has_no_hosts() -> None:
    assert parse("") == []
    assert parse("\n  \n# only comments\n\t# more\n") == []


def test_line_endings_and_bom() -> None:
    assert [h.where for h in parse("a\r\nb\rc\n")] == ["hosts.txt:1", "hosts.txt:2", "hosts.txt:3"]
    assert strip_where(parse("\ufeffnode01 slots=2\n")) == [HostSpec("node01", slots=2)]


def test_ranges_in_hostfile() -> None:
    hosts = parse("node[01-03] slots=8\nn[1,3,5-7]:2\nalice@r[1-2]-g[1-2] port=2222")
    assert [h.host for h in hosts] == [
        "node01", "node02", "node03",
        "n1", "n3", "n5", "n6", "n7",
        "r1-g1", "r1-g2", "r2-g1", "r2-g2",
    ]  # fmt: skip
    assert all(h.slots == 8 for h in hosts[:3])
    assert all(h.slots == 2 for h in hosts[3:8])
    assert all(h.user == "alice" and h.port == 2222 for h in hosts[8:])
    assert {h.where for h in hosts[:3]} == {"hosts.txt:1"}


def test_same_host_on_other_ports_is_not_a_duplicate() -> None:
    hosts = parse("node01\n[node01]:2222\nnode01 port=2223")
    assert [h.port for h in hosts] == [None, 2222, 2223]


def test_label() -> None:
    assert HostSpec("node01").label == "node01"
    assert HostSpec("node01", user="alice", slots=4).label == "node01"
    assert HostSpec("node01", port=2222).label == "[node01]:2222"
    assert HostSpec("::1", port=22).label == "[::1]:22"
    assert HostSpec("::1").label == "::1"


# --- errors at a place ------------------------------------------------------

ERRORS = [
    # host names
    ("a;b", "1:2", "invalid character ';' in host name 'a;b'"),
    ("  node$x", "1:7", "invalid character '$'"),
    ("'node'", "1:1", 'invalid character "\'"'),
    ('n"x', "1:2", "invalid character '\"'"),
    ("a/b", "1:2", "invalid character '/'"),
    ("nöde", "1:2", "invalid character 'ö'"),
    ("a@b@c", "1:4", "invalid character '@'"),
    ("-oProxyCommand=x", "1:1", "may not start with '-'"),
    ("-n", "1:1", "host name may not start with '-'"),
    (":4", "1:1", "expected a host name, got ':4'"),
    ("u@", "1:3", "expected a host name, got 'u@'"),
    ("u@:4", "1:3", "expected a host name"),
    ("slots=4", "1:1", "expected a host name before 'slots=4'"),
    ("node=1", "1:5", "invalid character '='"),
    # user names
    ("@h", "1:1", "expected a user name before '@', got '@h'"),
    ("-u@h", "1:1", "user name may not start with '-'"),
    ("a!b@h", "1:2", "invalid character '!' in user name 'a!b'"),
    ("h user=-x", "1:8", "user name may not start with '-'"),
    ("h user=a!b", "1:9", "invalid character '!' in user name"),
    ("h user=", "1:8", "expected a user name, got 'user='"),
    # host:N slots
    (
        "node:",
        "1:6",
        "expected host:N with N a positive integer (the number of slots), got 'node:'",
    ),
    ("node:0", "1:6", "expected host:N with N a positive integer"),
    ("node:x", "1:6", "got 'node:x'"),
    ("node:+4", "1:6", "got 'node:+4'"),
    ("node:1025", "1:6", "':N' gives the number of slots"),
    (
        "node:2222",
        "1:6",
        "':N' gives the number of slots, and 2222 in 'node:2222' is more than 1024; "
        "to give port 2222, write '[node]:2222' or 'node port=2222'",
    ),
    ("gpu[1-2]:2222", "1:10", "write 'gpu[1-2] port=2222'"),
    ("node:99999999999999999999999", "1:6", "more than 1024"),
    ("node:22:4", "1:5", "an IPv6 address or a port is written in brackets"),
    ("fe80::1", "1:5", "expected host:N with N the number of slots, got 'fe80::1'"),
    ("::1", "1:1", "written in brackets"),
    # bracketed form
    ("[node", "1:1", "expected ']' to close '['"),
    ("[::1", "1:1", "expected ']'"),
    ("u@[node", "1:3", "expected ']'"),
    ("[]:22", "1:2", "expected a host name or IPv6 address inside [...]"),
    ("[h]x", "1:4", "expected ':PORT' or nothing after ']', got '[h]x'"),
    ("[h]:", "1:5", "expected [host]:PORT with PORT a port number 1-65535, got '[h]:'"),
    ("[h]:0", "1:5", "expected [host]:PORT"),
    ("[h]:65536", "1:5", "expected [host]:PORT"),
    ("[h]:x", "1:5", "got '[h]:x'"),
    ("[h]:22:4", "1:7", "'[host]:PORT:N' is not accepted, got '[h]:22:4'"),
    ("[n[1-2]]:22", "1:3", "invalid character '['"),
    ("[a;b]:22", "1:3", "invalid character ';' in host name 'a;b'"),
    ("[-h]:22", "1:2", "may not start with '-'"),
    ("[zz::1]", "1:2", "invalid character 'z' in IPv6 address"),
    ("[1::2::3]", "1:2", "expected an IPv6 address inside [...], got '1::2::3'"),
    ("[fe80::1%eth0]", "1:9", "invalid character '%'"),
    # keys
    ("h slots=x", "1:3", "expected slots=N with N a positive integer, got 'slots=x'"),
    ("h slots=0", "1:3", "expected slots=N with N a positive integer, got 'slots=0'"),
    ("h slots=-1", "1:3", "got 'slots=-1'"),
    ("h slots=", "1:3", "got 'slots='"),
    ("h slots=1_0", "1:3", "got 'slots=1_0'"),
    ("h slots=٣", "1:3", "got 'slots=٣'"),
    (f"h slots={MAX_SLOTS + 1}", "1:3", f"up to {MAX_SLOTS}"),
    ("h port=0", "1:3", "expected port=P with P a port number 1-65535, got 'port=0'"),
    ("h port=65536", "1:3", "got 'port=65536'"),
    ("h port=ssh", "1:3", "got 'port=ssh'"),
    ("h max_slots=x", "1:3", "expected max_slots=N with N a non-negative integer"),
    (
        "h foo=1",
        "1:3",
        "unknown key 'foo' in 'foo=1': expected one of slots, port, user, max_slots",
    ),
    ("h Slots=1", "1:3", "unknown key 'Slots'"),
    ("h =4", "1:3", "expected key=value"),
    ("h node2", "1:3", "got 'node2'; write one host per line"),
    ("h slots = 4", "1:3", "expected slots=VALUE without spaces around '='"),
    ("h slots=1 slots=2", "1:11", "slots given twice: 'slots=' here, 'slots=' at column 3"),
    ("h:2 slots=3", "1:5", "slots given twice: 'slots=' here, 'host:N' at column 2"),
    ("[h]:22 port=22", "1:8", "port given twice: 'port=' here, '[host]:PORT' at column 4"),
    ("h port=1 port=2", "1:10", "port given twice"),
    ("u@h user=v", "1:5", "user given twice: 'user=' here, 'user@host' at column 1"),
    ("h user=a user=b", "1:10", "user given twice"),
    ("h max_slots=1 max_slots=2", "1:15", "max_slots given twice"),
    # ranges
    ("n[3-1]", "1:3", "reversed range '3-1' in 'n[3-1]'"),
    ("n[1-2", "1:2", "unbalanced '['"),
    ("n]", "1:2", "unbalanced ']'"),
    ("n1-2]", "1:5", "unbalanced ']'"),
    ("n[]", "1:2", "empty range '[]'"),
    ("n[a]", "1:3", "invalid character 'a' in range '[a]'"),
    ("n[1 ]", "1:2", "unbalanced '['"),
    ("n[1[2]]", "1:4", "nested '['"),
    ("n[1,,2]", "1:5", "empty item in range"),
    ("n[1,]", "1:5", "empty item in range"),
    ("n[-2]", "1:3", "bad range item '-2'"),
    ("n[1-]", "1:3", "bad range item '1-'"),
    ("n[1-2-3]", "1:3", "bad range item '1-2-3'"),
    ("n[1234567890123456789]", "1:3", "too long"),
    ("n[0-999999]", "1:1", f"expands to 1000000 hosts, more than the limit of {MAX_HOSTS}"),
    ("n[0-999]m[0-999]", "1:1", "expands to 1000000 hosts"),
    ("u@n[1-2", "1:4", "unbalanced '['"),
    # duplicates
    ("a\n# c\na", "3:1", "duplicate host a (first at hosts.txt:1)"),
    ("node01\n  node[00-02]", "2:3", "duplicate host node01 (first at hosts.txt:1)"),
    ("n[1,1]", "1:1", "duplicate host n1 (first at hosts.txt:1)"),
    ("[h]:22\nh port=22", "2:1", "duplicate host [h]:22 (first at hosts.txt:1)"),
    ("Node1\nnode1", "2:1", "duplicate host node1"),
    ("alice@h\nbob@h", "2:5", "duplicate host h (first at hosts.txt:1)"),
    ("[::1]\n[0::1]", "2:1", "duplicate host 0::1"),
    # columns and lines
    ("ok\n\tbad;", "2:5", "invalid character ';'"),
    ("ok\r\nbad;\r\n", "2:4", "invalid character ';'"),
    ("ok\n  h slots=x # c", "2:5", "got 'slots=x'"),
]


@pytest.mark.parametrize(("text", "where", "message"), ERRORS)
def test_errors_have_place_and_message(text: str, where: str, message: str) -> None:
    with pytest.raises(LocationError) as info:
        parse(text)
    line, column = (int(x) for x in where.split(":"))
    err = info.value
    assert (err.source, err.line, err.column) == (SRC, line, column)
    assert str(err).startswith(f"{SRC}:{where}: ")
    assert message in err.message
    assert err.exit_code == 2


def test_total_host_limit() -> None:
    with pytest.raises(LocationError, match=r"^hosts\.txt:2:1: more than 100000 hosts in total"):
        parse("a[0-99999]\nb[0-1]")


# --- expand_hostlist ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("node", ["node"]),
        ("", [""]),
        ("node[01-03]", ["node01", "node02", "node03"]),
        ("n[1,3,5-7]", ["n1", "n3", "n5", "n6", "n7"]),
        ("n[08-10]", ["n08", "n09", "n10"]),
        ("n[8-10]", ["n8", "n9", "n10"]),
        ("n[001-3]", ["n001", "n002", "n003"]),
        ("n[9-9]", ["n9"]),
        ("n[01,2,003]", ["n01", "n2", "n003"]),
        ("n[98-100]x", ["n98x", "n99x", "n100x"]),
        ("[1-2]", ["1", "2"]),
        ("a[1-2]b[1-2]", ["a1b1", "a1b2", "a2b1", "a2b2"]),
        ("r[1-2]-n[0-1]-g[5]", ["r1-n0-g5", "r1-n1-g5", "r2-n0-g5", "r2-n1-g5"]),
    ],
)
def test_expand_hostlist(pattern: str, expected: list[str]) -> None:
    assert expand_hostlist(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "offset"),
    [
        ("n[3-1]", 2),
        ("n[]", 1),
        ("n[1-2", 1),
        ("n1]", 2),
        ("n[x]", 2),
        ("n[1,,2]", 4),
        ("n[1[2]]", 3),
        ("n[1-99999999999999999999]", 2),
        ("n[0-100000]", 0),
    ],
)
def test_expand_hostlist_errors(pattern: str, offset: int) -> None:
    with pytest.raises(ValueError) as info:
        expand_hostlist(pattern)
    assert isinstance(info.value, HostlistError)
    assert info.value.offset == offset
    assert pattern in str(info.value)


def test_expand_hostlist_limit_is_inclusive() -> None:
    assert len(expand_hostlist("n[1-100000]")) == MAX_HOSTS


# --- parse_host_list ----------------------------------------------------------


def test_host_list_forms() -> None:
    hosts = parse_host_list("node1:4,node2:4")
    assert strip_where(hosts) == [HostSpec("node1", slots=4), HostSpec("node2", slots=4)]
    assert {h.where for h in hosts} == {"--hosts"}
    assert [h.host for h in parse_host_list("gpu[01-08]:8")] == [f"gpu0{i}" for i in range(1, 9)]
    assert strip_where(parse_host_list("alice@[host]:2222")) == [
        HostSpec("host", user="alice", port=2222)
    ]
    assert strip_where(parse_host_list("n[1,3]:2,m[5-6] slots=1 user=u, [::1]:22")) == [
        HostSpec("n1", slots=2),
        HostSpec("n3", slots=2),
        HostSpec("m5", user="u", slots=1),
        HostSpec("m6", user="u", slots=1),
        HostSpec("::1", port=22),
    ]
    assert [h.where for h in parse_host_list("a", source="--include")] == ["--include"]


@pytest.mark.parametrize(
    ("value", "column", "message"),
    [
        ("", 1, "expected a comma-separated list of hosts"),
        ("  ", 1, "expected a comma-separated list of hosts"),
        ("a,,b", 3, "expected a host between commas"),
        ("a,", 3, "expected a host between commas"),
        (",a", 1, "expected a host between commas"),
        ("a, ,b", 3, "expected a host between commas"),
        ("a,b;c", 4, "invalid character ';'"),
        ("a, b slots=x", 6, "expected slots=N with N a positive integer, got 'slots=x'"),
        ("a,user@host:2222", 13, "':N' gives the number of slots"),
        ("a,n[3-1]", 5, "reversed range"),
        ("a,n[1,2", 4, "unbalanced '['"),
        ("a,b,a", 5, "duplicate host a (first at --hosts:1:1)"),
        ("n1, n[0-2]", 5, "duplicate host n1 (first at --hosts:1:1)"),
        ("a # comment", 3, "expected key=value"),
        ("a#b", 2, "invalid character '#'"),
    ],
)
def test_host_list_errors(value: str, column: int, message: str) -> None:
    with pytest.raises(LocationError) as info:
        parse_host_list(value)
    assert str(info.value).startswith(f"--hosts:1:{column}: ")
    assert message in info.value.message


def test_host_list_source_in_errors() -> None:
    with pytest.raises(LocationError, match=r"^--exclude:1:2: "):
        parse_host_list("a;", source="--exclude")


# --- load_hostfile ------------------------------------------------------------


def test_load_hostfile(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("node01 slots=2\nnode02\n")
    hosts = load_hostfile(path)
    assert [h.where for h in hosts] == [f"{path}:1", f"{path}:2"]
    assert load_hostfile(str(path)) == hosts


def test_load_hostfile_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        load_hostfile(path)
    assert str(info.value) == f"hostfile not found: {path}"
    assert not isinstance(info.value, LocationError)
    with pytest.raises(ConfigError, match="hostfile not found"):
        load_hostfile(tmp_path / "nope" / "deeper")


def test_load_hostfile_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"directory.*{tmp_path}"):
        load_hostfile(tmp_path)


def test_load_hostfile_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Patched rather than chmod 0, which root (as in CI containers) reads anyway.
    # The reader opens with os.open (non-blocking, so that a FIFO cannot hang it).
    def deny(path: str, *args: object) -> int:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(configfile.os, "open", deny)
    path = tmp_path / "hosts"
    with pytest.raises(ConfigError) as info:
        load_hostfile(path)
    assert str(info.value) == f"cannot read hostfile {path}: permission denied"


@pytest.mark.parametrize("content", [b"", b"\n\n", b"# nothing here\n  # nor here\n"])
def test_load_hostfile_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "hosts"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_hostfile(path)
    assert str(info.value) == f"{path}: no hosts"


def test_load_hostfile_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_bytes(b"n1\r\nn\xc3\xb6\xff2\n")
    with pytest.raises(LocationError) as info:
        load_hostfile(path)
    assert str(info.value).startswith(f"{path}:2:3: invalid UTF-8 byte 0xff")


def test_load_hostfile_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_bytes(b"\xef\xbb\xbfok\nbad;\n")
    with pytest.raises(LocationError) as info:
        load_hostfile(path)
    assert str(info.value).startswith(f"{path}:2:4: ")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "deepspeed.txt",
            [
                HostSpec("worker-1", slots=8),
                HostSpec("worker-2", slots=8),
                HostSpec("worker-3", user="ubuntu", port=2222, slots=4),
                HostSpec("worker-4", user="ubuntu", slots=4),
                HostSpec("worker-5", slots=4),
            ],
        ),
        (
            "mpich.txt",
            [
                HostSpec("node01", slots=8),
                HostSpec("node02", slots=8),
                HostSpec("node03", user="alice", slots=4),
                HostSpec("10.0.0.5", port=2222, slots=2),
                HostSpec("fd00::7", port=22, slots=2),
            ],
        ),
        (
            "ranges.txt",
            [HostSpec(f"gpu0{i}", slots=8) for i in range(1, 5)]
            + [HostSpec(f"cpu{i}", slots=2) for i in (1, 3, 5, 6, 7)]
            + [HostSpec(f"rack{r}-n{n}", slots=1) for r in (1, 2) for n in (1, 2)],
        ),
    ],
)
def test_example_hostfiles(name: str, expected: list[HostSpec]) -> None:
    assert strip_where(load_hostfile(HOSTFILES / name)) == expected


# --- host entries for other loaders ----------------------------------------------


def test_parse_host_entry_reads_one_line() -> None:
    assert parse_host_entry("  alice@gpu[1-2]:4") == HostEntry(
        ("gpu1", "gpu2"), 8, "alice", None, 4)
    assert parse_host_entry("[::1]:2222 slots=2") == HostEntry(("::1",), 0, None, 2222, 2)
    assert parse_host_entry(" \t") is None


@pytest.mark.parametrize(("text", "index", "message"), [
    ("node slots=0", 5, "expected slots=N with N a positive integer"),
    ("a@b user=c", 4, "user given twice"),
    ("-oProxyCommand=x", 0, "host name may not start with '-'"),
])
def test_parse_host_entry_errors_carry_the_index(text: str, index: int, message: str) -> None:
    with pytest.raises(HostEntryError, match=message) as info:
        parse_host_entry(text)
    assert info.value.index == index
    # The same fault, at the same column, as a hostfile line.
    with pytest.raises(LocationError) as located:
        parse(text)
    assert (located.value.column, located.value.message) == (index + 1, info.value.message)


def test_expand_host_name_and_check_single_host() -> None:
    assert expand_host_name("n[08-10]") == ["n08", "n09", "n10"]
    with pytest.raises(HostEntryError, match="invalid character ' '") as info:
        expand_host_name("a b")
    assert info.value.index == 1
    check_single_host("fe80::1")
    check_single_host("node.example")
    for bad in ("n[1-2]", "1::2::3", "", "-n", "a" * 64):
        with pytest.raises(HostEntryError):
            check_single_host(bad)


def test_check_user_and_host_identity() -> None:
    check_user("alice.b-c_d")
    for bad in ("", "-u", "a b", "ö"):
        with pytest.raises(HostEntryError):
            check_user(bad)
    assert host_identity("Node1", 22) == host_identity("node1", 22) != host_identity("node1", None)
    assert host_identity("0:0::1", None) == host_identity("::1", None)


# --- render_hostfile ----------------------------------------------------------


def test_render_canonical_lines() -> None:
    hosts = [
        HostSpec("node01"),
        HostSpec("node02", slots=8),
        HostSpec("node03", user="alice", port=2222, slots=4),
        HostSpec("::1"),
        HostSpec("::2", port=22),
    ]
    text = render_hostfile(hosts)
    assert text == ("node01\nnode02 slots=8\nalice@[node03]:2222 slots=4\n[::1]\n[::2]:22\n")
    assert strip_where(parse(text)) == hosts
    assert render_hostfile([]) == ""


@pytest.mark.parametrize(
    "hosts",
    [
        [HostSpec("")],
        [HostSpec("a b")],
        [HostSpec("n[1-2]")],
        [HostSpec("-n")],
        [HostSpec("1::2::3")],
        [HostSpec("n", user="")],
        [HostSpec("n", user="-u")],
        [HostSpec("n", port=0)],
        [HostSpec("n", port=65536)],
        [HostSpec("n", slots=0)],
        [HostSpec("n"), HostSpec("N")],
    ],
)
def test_render_refuses_what_cannot_read_back(hosts: list[HostSpec]) -> None:
    with pytest.raises(ValueError, match="cannot render"):
        render_hostfile(hosts)


# --- properties ---------------------------------------------------------------

FRAGMENTS = [
    "node", "gpu", "n", "01", "1", "9", "0", "-", "_", ".", ",", ":", "::", "@",
    "[", "]", "[01-16]", "[1,3,5-7]", "[3-1]", "alice", "slots=", "port=", "user=",
    "max_slots=", "=", "8", "2222", "65536", "99999999999999999999", " ", "\t", "#",
    "\n", "\r", "\r\n", "::1", "fe80", "ö", "\x00", "\ufeff", "\u2028", ";", "$", "'",
]  # fmt: skip
NEAR_VALID = st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join)
ANY_TEXT = st.one_of(st.text(), NEAR_VALID)


def check_outcome(source: str, call: object) -> list[HostSpec] | None:
    assert callable(call)
    try:
        hosts = call()
    except LocationError as err:
        assert err.line >= 1 and err.column >= 1
        assert str(err).startswith(f"{source}:{err.line}:{err.column}: ")
        return None
    except ConfigError:
        return None
    assert isinstance(hosts, list)
    return hosts


@FAST
@given(ANY_TEXT)
def test_parse_hostfile_only_raises_config_errors(text: str) -> None:
    hosts = check_outcome(SRC, lambda: parse_hostfile(text, SRC))
    if hosts:
        # Whatever parses is valid enough to render and read back unchanged.
        assert strip_where(parse(render_hostfile(hosts))) == strip_where(hosts)


@FAST
@given(ANY_TEXT)
def test_parse_host_list_only_raises_config_errors(text: str) -> None:
    hosts = check_outcome("--hosts", lambda: parse_host_list(text))
    if hosts is not None:
        assert hosts


NAMES = st.from_regex(r"[A-Za-z0-9_.][A-Za-z0-9._-]{0,15}", fullmatch=True)
# Host names follow DNS label rules (labels of 1-63 characters), user names do not.
DNS_NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,7}(\.[A-Za-z0-9_-]{1,7}){0,2}\.?",
                          fullmatch=True)
HOSTS = st.one_of(DNS_NAMES, st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
SPECS = st.builds(
    HostSpec,
    host=HOSTS,
    user=st.none() | NAMES,
    port=st.none() | st.integers(1, 65535),
    slots=st.none() | st.integers(1, MAX_SLOTS),
)


def _key(spec: HostSpec) -> tuple[str, int | None]:
    host = ipaddress.IPv6Address(spec.host).compressed if ":" in spec.host else spec.host.lower()
    return host, spec.port


@FAST
@given(st.lists(SPECS, max_size=20, unique_by=_key))
def test_render_round_trips(hosts: list[HostSpec]) -> None:
    text = render_hostfile(hosts)
    assert strip_where(parse(text)) == hosts
    if hosts:
        assert strip_where(parse_host_list(text.strip().replace("\n", ","))) == hosts


ITEMS = st.tuples(st.integers(0, 300), st.integers(0, 20), st.integers(1, 4))
GROUPS = st.lists(st.lists(ITEMS, min_size=1, max_size=3), max_size=3)


@FAST
@given(st.sampled_from(["n", "gpu-", "a.b_"]), GROUPS)
def test_expand_hostlist_counts(prefix: str, groups: list[list[tuple[int, int, int]]]) -> None:
    pattern = prefix
    sizes = []
    for group in groups:
        items = [
            f"{low:0{width}d}-{low + extra:0{width}d}" if extra else f"{low:0{width}d}"
            for low, extra, width in group
        ]
        pattern += "[" + ",".join(items) + "]x"
        sizes.append(sum(extra + 1 for _, extra, _ in group))
    if math.prod(sizes) > MAX_HOSTS:
        with pytest.raises(HostlistError, match="more than the limit"):
            expand_hostlist(pattern)
        return
    names = expand_hostlist(pattern)
    assert len(names) == math.prod(sizes)
    assert all(name.startswith(prefix) for name in names)
    if not groups:
        assert names == [prefix]
