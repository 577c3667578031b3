"""--include/--exclude (DeepSpeed syntax) and the Slurm allocation as a host list."""

from __future__ import annotations

import re

import pytest

from sshrun.errors import ConfigError
from sshrun.hostfile import HostSpec, parse_host_list
from sshrun.selection import apply_filters, parse_filter, slurm_hosts

HOSTS = tuple(parse_host_list("w0:4,w1:4,w2:4"))


def names(hosts: tuple[HostSpec, ...]) -> list[str]:
    return [h.host for h in hosts]


def test_no_filter_keeps_everything() -> None:
    assert apply_filters(HOSTS) == HOSTS


def test_include_whole_hosts_keeps_hostfile_order() -> None:
    assert names(apply_filters(HOSTS, include="w2@w0")) == ["w0", "w2"]


def test_include_slots_sets_visible_devices_and_slot_count() -> None:
    out = apply_filters(HOSTS, include="w0@w1:0,2")
    assert names(out) == ["w0", "w1"]
    assert out[0] == HOSTS[0]
    assert out[1].slots == 2
    assert dict(out[1].env)["CUDA_VISIBLE_DEVICES"] == "0,2"


def test_exclude_hosts_and_slots() -> None:
    out = apply_filters(HOSTS, exclude="w1@w2:3")
    assert names(out) == ["w0", "w2"]
    assert out[1].slots == 3
    assert dict(out[1].env)["CUDA_VISIBLE_DEVICES"] == "0,1,2"


def test_ranges_in_filters() -> None:
    assert names(apply_filters(HOSTS, exclude="w[0-1]")) == ["w2"]


@pytest.mark.parametrize(
    ("include", "exclude", "message"),
    [
        ("w0", "w1", "--include and --exclude cannot be used together"),
        ("w9", None, "--include: w9 is not one of the cluster's hosts"),
        ("w0:7", None, "--include: w0 has 4 slots (0-3); slot 7 does not exist"),
        ("w0:x", None, "expected HOST:SLOT[,SLOT...]"),
        ("w0@@w1", None, "empty host between '@' separators"),
        ("w0@w0", None, "w0 is named twice"),
        (None, "w0@w1@w2", "--exclude: no host is left to run on"),
        (None, "w0:0,1,2,3", "--exclude: no slot of w0 is left"),
    ],
)
def test_filter_errors(include: str | None, exclude: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_filters(HOSTS, include=include, exclude=exclude)


def test_parse_filter_sorts_and_dedups_slots() -> None:
    assert parse_filter("a:2,0,2", "--include") == {"a": (0, 2)}


def test_slurm_nodelist_expanded() -> None:
    hosts = slurm_hosts({"SLURM_JOB_NODELIST": "gpu[01-03,07],cpu1",
                         "SLURM_NTASKS_PER_NODE": "8"})
    assert hosts is not None
    assert names(hosts) == ["gpu01", "gpu02", "gpu03", "gpu07", "cpu1"]
    assert {h.slots for h in hosts} == {8}
    assert slurm_hosts({}) is None
