"""Folding host names into hostlists (sshrun/nodeset.py): exactly the names given."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshrun.hostfile import expand_hostlist
from sshrun.nodeset import fold_hosts, fold_numbers, fold_ranks


def expand_all(hostlist: str) -> list[str]:
    """A folded list's names: split at the commas outside brackets."""
    parts = re.findall(r"(?:[^,\[]|\[[^\]]*\])+", hostlist)
    # An address with a port ([host]:2222) is a name, not a range.
    return [name for part in parts
            for name in ([part] if re.fullmatch(r"\[.*\]:\d+", part) else expand_hostlist(part))]


@pytest.mark.parametrize(("names", "folded"), [
    (["node01", "node02", "node03"], "node[01-03]"),
    (["node3", "node1", "node2", "node7"], "node[1-3,7]"),
    (["node9", "node10", "node11"], "node[9-11]"),
    (["node09", "node10"], "node[09-10]"),
    (["node099", "node100", "node5"], "node5,node[099-100]"),
    (["gpu1", "node01", "node01"], "gpu1,node01"),
    (["head", "node2"], "head,node2"),
    (["rack1-n01", "rack1-n02", "rack2-n01"], "rack1-n[01-02],rack2-n01"),
    (["127.0.0.2", "127.0.0.3", "127.0.0.4"], "127.0.0.[2-4]"),
    (["[127.0.0.2]:2222", "node1"], "[127.0.0.2]:2222,node1"),
    (["n1.example", "n2.example"], "n[1-2].example"),
    ([], ""),
])
def test_fold_hosts(names: list[str], folded: str) -> None:
    assert fold_hosts(names) == folded
    assert sorted(expand_all(folded)) == sorted(set(names))


def test_numbers_and_ranks() -> None:
    assert fold_numbers([7, 4, 5, 6, 0, 2, 2]) == "0,2,4-7"
    assert fold_numbers([1, 2], width=3) == "001-002"
    assert fold_ranks([3]) == "r3"
    assert fold_ranks(range(8, 512)) == "r[8-511]"
    assert fold_ranks([0, 2, 4, 5, 6, 7]) == "r[0,2,4-7]"


names = st.builds(
    lambda prefix, number, pad, suffix: f"{prefix}{number:0{pad}d}{suffix}",
    st.sampled_from(["node", "gpu", "a-", "x1y", "127.0.0."]),
    st.integers(0, 1200), st.integers(1, 4), st.sampled_from(["", ".lab", "-b"]))


@given(st.lists(names | st.sampled_from(["head", "login"]), max_size=40))
def test_folding_round_trips(given_names: list[str]) -> None:
    folded = fold_hosts(given_names)
    assert sorted(expand_all(folded)) == sorted(set(given_names))
    assert fold_hosts(expand_all(folded)) == folded
