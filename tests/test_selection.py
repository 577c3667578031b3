"""--include/--exclude (DeepSpeed syntax) and the Slurm allocation as a host list."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sshrun.errors import ConfigError
from sshrun.hostfile import HostSpec, parse_host_list
from sshrun.selection import apply_filters, parse_filter, slurm_hosts

REPO = Path(__file__).resolve().parent.parent
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
        (None, "w0@w1@w2", "--exclude: no host is left to run on"),
        (None, "w0:7", "--exclude: w0 has 4 slots (0-3); slot 7 does not exist"),
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


# --- DeepSpeed's own cases (tests/unit/launcher/test_run.py), ported -----------------------
#
# DeepSpeed's parse_resource_filter maps host -> slot list; `resources` reads
# sshrun's filtered hosts the same way, so that its expected values carry over
# as they are. Where DeepSpeed returns {} (nothing to run on), sshrun says so.

ONE = tuple(parse_host_list("worker-0:4"))
TWO = tuple(parse_host_list("worker-0:4,worker-1:4"))
NOTHING_LEFT = "no host is left to run on"


def resources(hosts: tuple[HostSpec, ...]) -> dict[str, list[int]]:
    """host -> the slot indices it runs on, as DeepSpeed's filter returns them."""
    out: dict[str, list[int]] = {}
    for host in hosts:
        assert host.slots is not None
        devices = dict(host.env).get("CUDA_VISIBLE_DEVICES")
        slots = list(range(host.slots)) if devices is None else [int(d) for d in devices.split(",")]
        assert len(slots) == host.slots  # the slot count follows the slots chosen
        out[host.host] = slots
    return out


@pytest.mark.parametrize(
    ("hosts", "include", "exclude", "expected"),
    [
        # test_parser_local
        (ONE, None, None, {"worker-0": [0, 1, 2, 3]}),
        (ONE, None, "worker-0:1", {"worker-0": [0, 2, 3]}),
        (ONE, None, "worker-0:1,2", {"worker-0": [0, 3]}),
        (ONE, "worker-0:1", None, {"worker-0": [1]}),
        (ONE, "worker-0:1,1", None, {"worker-0": [1]}),
        (ONE, "worker-0:1@worker-0:0,1", None, {"worker-0": [0, 1]}),
        (ONE, "worker-0", None, {"worker-0": [0, 1, 2, 3]}),
        # test_parser_multinode
        (TWO, None, None, {"worker-0": [0, 1, 2, 3], "worker-1": [0, 1, 2, 3]}),
        (TWO, "worker-1:0,3", None, {"worker-1": [0, 3]}),
        (TWO, None, "worker-1", {"worker-0": [0, 1, 2, 3]}),
        (TWO, None, "worker-0:0,1@worker-1:3", {"worker-0": [2, 3], "worker-1": [0, 1, 2]}),
        # test_parse_inclusion_exclusion
        (TWO, "worker-0", None, {"worker-0": [0, 1, 2, 3]}),
        (TWO, "worker-0@worker-1:0,2", None, {"worker-0": [0, 1, 2, 3], "worker-1": [0, 2]}),
        (TWO, "worker-1:0,2", None, {"worker-1": [0, 2]}),
        (TWO, None, "worker-0:1", {"worker-0": [0, 2, 3], "worker-1": [0, 1, 2, 3]}),
    ],
)
def test_deepspeed_filter_cases(hosts: tuple[HostSpec, ...], include: str | None,
                                exclude: str | None, expected: dict[str, list[int]]) -> None:
    assert resources(apply_filters(hosts, include=include, exclude=exclude)) == expected


@pytest.mark.parametrize("exclude", ["worker-0", "worker-0:0,1,2,3"])
def test_deepspeed_excluding_everything_leaves_nothing(exclude: str) -> None:
    # DeepSpeed returns {} here; sshrun cannot run on nothing.
    with pytest.raises(ConfigError, match=re.escape(f"--exclude: {NOTHING_LEFT}")):
        apply_filters(ONE, exclude=exclude)


def test_excluding_every_slot_of_one_host_leaves_it_out() -> None:
    # As DeepSpeed drops a host emptied slot by slot, exactly as if named bare.
    by_slots = apply_filters(TWO, exclude="worker-0:0,1,2,3")
    assert by_slots == apply_filters(TWO, exclude="worker-0") == TWO[1:]


def test_whole_host_keeps_its_spec_untouched() -> None:
    # A bare name (alone or twice) sets no CUDA_VISIBLE_DEVICES: the host runs as given.
    assert apply_filters(TWO, include="worker-0") == TWO[:1]
    assert apply_filters(TWO, include="worker-0@worker-0") == TWO[:1]


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        # Named twice in --exclude: the union of the slots is excluded, as
        # DeepSpeed's parse_node_config_list merges them.
        (None, "worker-0:1@worker-0:2", {"worker-0": [0, 3], "worker-1": [0, 1, 2, 3]}),
        (None, "worker-0:1@worker-0:1", {"worker-0": [0, 2, 3], "worker-1": [0, 1, 2, 3]}),
        (None, "worker-0:3@worker-1:0@worker-0:0", {"worker-0": [1, 2], "worker-1": [1, 2, 3]}),
        # Named twice through a range and by name.
        ("worker-[0-1]:1@worker-1:2", None, {"worker-0": [1], "worker-1": [1, 2]}),
        (None, "worker-[0-1]:0@worker-1:3", {"worker-0": [1, 2, 3], "worker-1": [1, 2]}),
        # A bare name is every slot: its union with some slots is the whole host.
        ("worker-0:1@worker-0", None, {"worker-0": [0, 1, 2, 3]}),
        (None, "worker-0@worker-0:1", {"worker-1": [0, 1, 2, 3]}),
    ],
)
def test_host_named_twice_is_the_union(include: str | None, exclude: str | None,
                                       expected: dict[str, list[int]]) -> None:
    assert resources(apply_filters(TWO, include=include, exclude=exclude)) == expected


def test_parse_filter_merges_a_host_named_twice() -> None:
    assert parse_filter("a:2@b@a:0,2@c:1", "--include") == {"a": (0, 2), "b": None, "c": (1,)}
    assert parse_filter("a:2@a", "--exclude") == {"a": None}


@pytest.mark.parametrize("flag", ["--include", "--exclude"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        # test_parser_errors: a host or a slot that does not exist
        ("jeff", "jeff is not one of the cluster's hosts"),
        ("worker-1:4", "worker-1 has 4 slots (0-3); slot 4 does not exist"),
        # "formatting": '5' reads as a host name, which the cluster lacks
        ("worker-1@worker-0:1@5", "5 is not one of the cluster's hosts"),
        # test_parse_inclusion_exclusion_errors
        ("worker-0:4", "worker-0 has 4 slots (0-3); slot 4 does not exist"),
        ("worker-0:99", "worker-0 has 4 slots (0-3); slot 99 does not exist"),
        ("worker-0:0,4", "worker-0 has 4 slots (0-3); slot 4 does not exist"),
        # a missing slot is found in the union too
        ("worker-0:1@worker-0:4", "worker-0 has 4 slots (0-3); slot 4 does not exist"),
    ],
)
def test_deepspeed_filter_errors(flag: str, value: str, message: str) -> None:
    kwargs = {"include" if flag == "--include" else "exclude": value}
    with pytest.raises(ConfigError) as caught:
        apply_filters(TWO, **kwargs)
    assert str(caught.value) == f"{flag}: {message}"


def test_deepspeed_mutually_exclusive() -> None:
    with pytest.raises(ConfigError, match="--include and --exclude cannot be used together"):
        apply_filters(TWO, include="worker-0", exclude="worker-1")


def test_excluding_slots_needs_a_slot_count() -> None:
    hosts = tuple(parse_host_list("w0,w1:2"))
    with pytest.raises(ConfigError, match=re.escape(
            "--exclude: w0 has no slot count, so its slots cannot be excluded")):
        apply_filters(hosts, exclude="w0:0")
    # Included slots of such a host are taken as given (its GPUs are unknown here).
    assert dict(apply_filters(hosts, include="w0:5")[0].env)["CUDA_VISIBLE_DEVICES"] == "5"


# --- the command line --------------------------------------------------------------------


def dry_run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sshrun", "--dry-run", "--hosts", "w0:4,w1:4", *argv, "t.py"],
        cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("flag", ["--exclude", "--include"])
def test_cli_missing_slot_is_one_line_and_exit_2(flag: str) -> None:
    done = dry_run(flag, "w1:4")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"sshrun: error: {flag}: w1 has 4 slots (0-3); slot 4 does not exist\n"


def test_cli_host_named_twice_in_include_runs_on_the_union() -> None:
    done = dry_run("--include", "w1:1@w1:0,1")
    assert done.returncode == 0, done.stderr
    assert "node 0: w1 (ranks 0-1)" in done.stdout
    assert "  env:     CUDA_VISIBLE_DEVICES=0,1" in done.stdout
    assert "w0" not in done.stdout
