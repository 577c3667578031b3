"""sshrun.ssh_config: the indexed parse gives exactly what asyncssh's own parse gives.

Every comparison runs both parsers on the same real file for the same host and
compares everything a parse leaves behind: the options, the ``%`` tokens, the
matching state and line number, or the error (type and message).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from asyncssh.config import SSHClientConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sshrun import ssh_config
from sshrun.ssh_config import IndexedConfig, indexed_parsing

State = tuple[object, ...]


def parsed(cls: type[SSHClientConfig], path: Path, host: str, user: object = (),
           port: object = ()) -> State:
    try:
        config = cls.load(None, [path], False, False, False, "me", user, host, port)
    except Exception as exc:  # the error itself is compared
        return ("error", type(exc).__name__, str(exc))
    assert isinstance(config, SSHClientConfig)
    return ("ok", config._options, config._tokens, config._matching, config._line_no)


def same(path: Path, host: str, user: object = (), port: object = ()) -> None:
    assert parsed(IndexedConfig, path, host, user, port) == \
        parsed(SSHClientConfig, path, host, user, port), (host, path.read_text())


def test_the_installed_asyncssh_gets_the_indexed_parse() -> None:
    # If this fails, asyncssh's parser changed: compare sshrun/ssh_config.py's
    # loop with the new SSHConfig.parse and update _KNOWN_SOURCES (until then,
    # sshrun parses with asyncssh's own parse, correctly but in O(file) a host).
    assert indexed_parsing(), ssh_config._sources()


CASES = {
    "blocks": "Host a\n  HostName 10.0.0.1\n  User u\nHost b c\n Port 23\n"
              "Host *\n  User star\n  IdentityFile ~/.ssh/id_%h_%r_%p\n",
    "global first": "User g\nPort 2\nHost a\n User a\n",
    "negation": "Host !a,*\n  User nota\nHost a\n  User isa\n",
    "match": "Match host 10.0.0.1\n  User m\nHost a\n  HostName 10.0.0.1\n"
             "Match originalhost a\n  Port 7\nMatch user uu\n  Port 8\nMatch all\n  User all\n",
    "missing value": "Host a\n  Port\nHost b\n  User x\n",
    "extra data": "Host a\n  Port 1 2\n",
    "bad number": "Host b\n  Port xx\n",
    "unbalanced quote": 'Host a\n  User "unbalanced\n',
    "equals": "Host=a\n  User=eq\n  Port = 5\nHost a  b\n  ProxyCommand ssh -W %h:%p x\n",
    "empty Host": "Host\n  User x\n",
    "last block not matching": "Host a\n User x\nHost zz\n User z\n",
    "brackets and ?": "Host [a]\n  User br\nHost a?\n  User q\n",
    "empty pattern": "Host a,,b\n  User c\n",
    "case": "HOST A\n  USER big\nhost a\n  user small\n",
    "line endings": "Host a\r\n  User crlf\r\nHost b\r  User cr\r",
    "comments": "# Host a\n\n   # indented\nHost a # not a comment in ssh\n  User x\n",
    "unknown options": "Host a\n  Frobnicate yes\n  User x\n",
    "hostname token": "Host a b\n  HostName %h.example\nHost *.example\n  User ex\n",
}
HOSTS = ["a", "b", "c", "zz", "A", "[a]", "ab", "a.example", "10.0.0.1"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_asyncssh(tmp_path: Path, name: str) -> None:
    path = tmp_path / "config"
    path.write_text(CASES[name], newline="")
    for host in HOSTS:
        same(path, host)
        same(path, host, "uu", 2222)


def test_include_is_asyncssh_s_own(tmp_path: Path) -> None:
    included = tmp_path / "included"
    included.write_text("User incuser\nHost b\n  Port 99\nHost nomatch\n  User no\n")
    path = tmp_path / "config"
    path.write_text(f"Host a\n  Include {included}\n  Port 5\nHost b\n  User bu\n"
                    f"Host *\n  Include {included}\n")
    for host in HOSTS:
        same(path, host)


def test_a_config_with_a_block_per_node(tmp_path: Path) -> None:
    path = tmp_path / "config"
    # As tests/sshd_cluster.py writes them.
    blocks = [f"Host node{k}\n    HostName 127.0.0.{k + 2}\n    Port 2222\n    User me\n"
              "    IdentityFile /keys/id\n    IdentitiesOnly yes\n"
              "    UserKnownHostsFile /kh\n    StrictHostKeyChecking yes\n"
              for k in range(200)]
    path.write_text("\n".join(blocks) + "Host *\n  ServerAliveInterval 5\n")
    for k in (0, 1, 99, 199):
        same(path, f"node{k}")
    same(path, "elsewhere")
    # A host's parse visits its own block and the wildcard one, not all 201.
    index = ssh_config._index(path, IndexedConfig)
    assert index is not None
    assert len(index.visited("node99")) == 2


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("Host a\n  User before\n")
    assert parsed(IndexedConfig, path, "a")[1]["User"] == "before"  # type: ignore[index]
    path.write_text("Host a\n  User after_longer\n")
    same(path, "a")
    assert parsed(IndexedConfig, path, "a")[1]["User"] == "after_longer"  # type: ignore[index]


# Lines of the kinds that matter to the index: Host lines with names, patterns
# and negations, Match lines, options with and without '=' and quotes, tokens,
# and lines that are wrong.
NAMES = st.sampled_from(["a", "b", "c", "node1", "node2", "10.0.0.1"])
PATTERNS = st.one_of(NAMES, st.sampled_from(["*", "node*", "?", "!a", "!node1", "[a]", ""]))
HOST_LINE = st.lists(PATTERNS, min_size=0, max_size=3).map(
    lambda ps: "Host " + st_join(ps))
MATCH_LINE = st.sampled_from([
    "Match all", "Match host a", "Match originalhost node*", "Match user me",
    "Match !host b", "Match host", "Match bogus x", "Match canonical",
])
OPTION_LINE = st.sampled_from([
    "  User x", "  User=y", "  Port 22", "  Port = 2200", "  Port xx", "  Port",
    "  HostName %h.example", "  HostName 10.0.0.1", '  User "quoted name"', "  User a b",
    "  IdentityFile ~/.ssh/id_%r", "  ProxyCommand ssh -W %h:%p jump",
    "  ProxyJump none", "  Frobnicate yes", "# comment", "", '  User "open',
    "  ServerAliveInterval 3", "  UserKnownHostsFile /kh %d/kh2",
])
LINES = st.lists(st.one_of(HOST_LINE, MATCH_LINE, OPTION_LINE, OPTION_LINE), max_size=14)


COUNTER = itertools.count()


def st_join(patterns: list[str]) -> str:
    return ",".join(patterns) if len(patterns) < 3 else " ".join(patterns)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=LINES, host=st.sampled_from(["a", "b", "node1", "node2", "zz", "10.0.0.1"]),
       user=st.sampled_from([(), "me", "other"]))
def test_any_config_parses_as_asyncssh_parses_it(tmp_path: Path, lines: list[str], host: str,
                                                 user: object) -> None:
    # A new file each time: a rewrite within one clock tick, of the same size,
    # would look unchanged to the index's cache (a person's edit would not).
    path = tmp_path / f"config{next(COUNTER)}"
    path.write_text("\n".join(lines) + "\n")
    same(path, host, user)
