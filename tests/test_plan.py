"""Tests for sshrun.plan: ranks, torchrun arguments, environment, redaction, values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sshrun.errors import ConfigError
from sshrun.hostfile import HostSpec
from sshrun.plan import (
    REDACTED,
    JobConfig,
    JobPlan,
    NodePlan,
    RestartPolicy,
    Timeouts,
    format_endpoint,
    given_endpoint,
    parse_endpoint,
    parse_nproc,
    plan_job,
    probe_endpoint,
    rank_env,
    target_args,
    torchrun_args,
)
from sshrun.redact import redact_env

FAST = settings(max_examples=200, deadline=None)


def hosts(*specs: tuple[str, int | None]) -> tuple[HostSpec, ...]:
    return tuple(HostSpec(name, slots=slots) for name, slots in specs)


def config(*specs: tuple[str, int | None], **kwargs: object) -> JobConfig:
    return JobConfig(hosts=hosts(*specs), target=("train.py", "--epochs", "3"),
                     **kwargs)  # type: ignore[arg-type]


def flag(args: list[str], name: str) -> str:
    """The value after ``name`` in ``args``; the flag must appear exactly once."""
    assert args.count(name) == 1, args
    return args[args.index(name) + 1]


# --- plan_job ---------------------------------------------------------------------------


def test_node_ranks_follow_host_order() -> None:
    plan = plan_job(config(("c", 1), ("a", 1), ("b", 1)), "job1")
    assert [n.index for n in plan.nodes] == [0, 1, 2]
    assert [n.host.host for n in plan.nodes] == ["c", "a", "b"]


def test_first_rank_offsets_follow_slots() -> None:
    plan = plan_job(config(("a", 2), ("b", 4), ("c", 1)), "job1")
    assert [n.nproc for n in plan.nodes] == ["2", "4", "1"]
    assert [n.first_rank for n in plan.nodes] == [0, 2, 6]
    assert [n.ranks for n in plan.nodes] == [range(0, 2), range(2, 6), range(6, 7)]
    assert plan.world_size == 7


def test_host_without_slots_runs_one_process() -> None:
    plan = plan_job(config(("a", None), ("b", 3), ("c", None)), "job1")
    assert [n.nproc for n in plan.nodes] == ["1", "3", "1"]
    assert [n.first_rank for n in plan.nodes] == [0, 1, 4]
    assert plan.world_size == 5


def test_nproc_per_node_overrides_slots() -> None:
    plan = plan_job(config(("a", 2), ("b", 4), ("c", 1), nproc_per_node="3"), "job1")
    assert [n.nproc for n in plan.nodes] == ["3", "3", "3"]
    assert [n.first_rank for n in plan.nodes] == [0, 3, 6]
    assert plan.world_size == 9


@pytest.mark.parametrize("word", ["auto", "gpu", "cpu"])
def test_world_size_unknown_for_nproc_words(word: str) -> None:
    plan = plan_job(config(("a", 2), ("b", 2), nproc_per_node=word), "job1")
    assert plan.world_size is None
    assert [n.nproc for n in plan.nodes] == [word, word]
    # Ranks of a node after one with an unknown process count cannot be known.
    assert plan.nodes[1].first_rank is None
    assert all(n.ranks is None for n in plan.nodes)


def test_c10d_leaves_ranks_to_the_rendezvous() -> None:
    plan = plan_job(config(("a", 2), ("b", 2), rdzv_backend="c10d"), "job1")
    assert [n.first_rank for n in plan.nodes] == [None, None]
    assert [n.ranks for n in plan.nodes] == [None, None]
    assert plan.world_size == 4


def test_unknown_rdzv_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError,
                       match="--rdzv-backend: expected static, c10d, etcd or etcd-v2"):
        plan_job(config(("a", 1), rdzv_backend="zookeeper"), "job1")


def test_no_hosts_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no hosts"):
        plan_job(JobConfig(hosts=(), target=("t.py",)), "job1")


def test_no_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nothing to run"):
        plan_job(JobConfig(hosts=hosts(("a", 1)), target=()), "job1")


def test_env_has_sshrun_variables_after_user_env() -> None:
    cfg = config(("a", 1), ("b", 1), env=(("OMP_NUM_THREADS", "4"),))
    plan = plan_job(cfg, "job7", attempt=2)
    for node in plan.nodes:
        assert node.env == (
            ("OMP_NUM_THREADS", "4"),
            ("SSHRUN_JOB_ID", "job7"),
            ("SSHRUN_NODE_RANK", str(node.index)),
            ("SSHRUN_NNODES", "2"),
            ("SSHRUN_HOST", node.host.label),
            ("SSHRUN_ATTEMPT", "2"),
        )


def test_sshrun_host_is_the_label_with_port() -> None:
    plan = plan_job(JobConfig(hosts=(HostSpec("h", port=2222),), target=("t",)), "j")
    assert dict(plan.nodes[0].env)["SSHRUN_HOST"] == "[h]:2222"


def test_tags_unique_per_node_and_attempt() -> None:
    cfg = config(("a", 1), ("b", 1), ("c", 1))
    tags = [n.tag for attempt in (0, 1) for n in plan_job(cfg, "job1", attempt).nodes]
    assert len(set(tags)) == len(tags) == 6
    assert all("job1" in tag for tag in tags)


@FAST
@given(st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_ranks_partition_the_world(slots: list[int]) -> None:
    plan = plan_job(config(*((f"h{i}", s) for i, s in enumerate(slots))), "j")
    ranks = [r for node in plan.nodes for r in node.ranks or ()]
    assert ranks == list(range(sum(slots)))
    assert plan.world_size == sum(slots)


# --- torchrun_args ----------------------------------------------------------------------


def two_node_plan(**kwargs: object) -> JobPlan:
    return plan_job(config(("a", 2), ("b", 2), **kwargs), "job-42")


def test_static_arguments_exactly() -> None:
    plan = two_node_plan()
    args = torchrun_args(plan, plan.nodes[1], ("a", 29500), "10.0.0.2")
    assert args == [
        "--nnodes", "2",
        "--nproc-per-node", "2",
        "--rdzv-backend", "static",
        "--rdzv-endpoint", "a:29500",
        "--rdzv-id", "job-42",
        "--max-restarts", "0",
        "--monitor-interval", "0.1",
        "--shutdown-timeout", "10",
        "--node-rank", "1",
    ]


def test_static_node_rank_per_node_and_no_local_addr() -> None:
    plan = two_node_plan()
    for node in plan.nodes:
        args = torchrun_args(plan, node, ("a", 29500), "10.0.0.9")
        assert flag(args, "--node-rank") == str(node.index)
        assert flag(args, "--max-restarts") == "0"
        assert flag(args, "--rdzv-endpoint") == "a:29500"
        assert flag(args, "--rdzv-id") == "job-42"
        assert "--local-addr" not in args


def test_rdzv_id_given_overrides_job_id() -> None:
    plan = two_node_plan(rdzv_id="my-run")
    args = torchrun_args(plan, plan.nodes[0], ("a", 29500), None)
    assert flag(args, "--rdzv-id") == "my-run"


def test_c10d_passes_local_addr_and_no_node_rank() -> None:
    plan = two_node_plan(rdzv_backend="c10d")
    args = torchrun_args(plan, plan.nodes[1], ("a", 29400), "192.168.1.7")
    assert flag(args, "--local-addr") == "192.168.1.7"
    assert flag(args, "--rdzv-backend") == "c10d"
    assert flag(args, "--max-restarts") == "0"
    assert "--node-rank" not in args


def test_c10d_without_local_addr() -> None:
    plan = two_node_plan(rdzv_backend="c10d")
    args = torchrun_args(plan, plan.nodes[0], ("a", 29400), None)
    assert "--local-addr" not in args
    assert "--node-rank" not in args


def test_ipv6_endpoint_is_bracketed() -> None:
    plan = two_node_plan()
    args = torchrun_args(plan, plan.nodes[0], ("::1", 29500), None)
    assert flag(args, "--rdzv-endpoint") == "[::1]:29500"


def test_endpoint_without_port_shows_placeholder() -> None:
    plan = two_node_plan()
    args = torchrun_args(plan, plan.nodes[0], ("a", None), None)
    assert flag(args, "--rdzv-endpoint") == "a:<free port>"


def test_rdzv_conf_and_grace_are_passed() -> None:
    plan = two_node_plan(rdzv_conf="timeout=900", timeouts=Timeouts(grace=2.5))
    args = torchrun_args(plan, plan.nodes[0], ("a", 1), None)
    assert flag(args, "--rdzv-conf") == "timeout=900"
    assert flag(args, "--shutdown-timeout") == "2"


def test_shutdown_timeout_at_least_one_second() -> None:
    plan = two_node_plan(timeouts=Timeouts(grace=0.2))
    args = torchrun_args(plan, plan.nodes[0], ("a", 1), None)
    assert flag(args, "--shutdown-timeout") == "1"


def test_nnodes_and_nproc_per_node_word() -> None:
    plan = two_node_plan(nproc_per_node="auto")
    args = torchrun_args(plan, plan.nodes[0], ("a", 1), None)
    assert flag(args, "--nnodes") == "2"
    assert flag(args, "--nproc-per-node") == "auto"


def test_target_args_modes() -> None:
    assert target_args(config(("a", 1))) == ["script", "train.py", "--epochs", "3"]
    assert target_args(config(("a", 1), module=True))[0] == "module"
    assert target_args(config(("a", 1), no_python=True))[0] == "exec"


@pytest.mark.parametrize(
    ("host", "port", "shown"),
    [
        ("a", 29500, "a:29500"),
        ("10.0.0.1", 1, "10.0.0.1:1"),
        ("::1", 29500, "[::1]:29500"),
        ("fe80::1", None, "[fe80::1]:<free port>"),
    ],
)
def test_format_endpoint(host: str, port: int | None, shown: str) -> None:
    assert format_endpoint(host, port) == shown


# --- redact (secret-looking names) ------------------------------------------------------


def redact(env: object) -> list[tuple[str, str]]:
    return redact_env(env, ())  # type: ignore[arg-type]



@pytest.mark.parametrize(
    "name",
    [
        "WANDB_API_KEY",
        "HF_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "PGPASSWORD",
        "MYSQL_PASSWD",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "github_token",
    ],
)
def test_redact_hides_secret_values(name: str) -> None:
    assert redact({name: "hunter2"}) == [(name, REDACTED)]
    assert redact([(name, "hunter2")]) == [(name, REDACTED)]


@pytest.mark.parametrize(
    "name", ["OMP_NUM_THREADS", "NCCL_DEBUG", "SSHRUN_JOB_ID", "PYTHONUNBUFFERED", "PATH"]
)
def test_redact_keeps_ordinary_values(name: str) -> None:
    assert redact({name: "4"}) == [(name, "4")]


def test_redact_keeps_order_and_names() -> None:
    env = [("A", "1"), ("HF_TOKEN", "t"), ("B", "2")]
    assert redact(env) == [("A", "1"), ("HF_TOKEN", REDACTED), ("B", "2")]


def test_redacted_marker() -> None:
    assert REDACTED == "<redacted>"


# --- parse_nproc / parse_endpoint -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("1", "1"), ("8", "8"), ("08", "8"), (" 4 ", "4"), ("auto", "auto"), ("gpu", "gpu"),
     ("cpu", "cpu"), ("xpu", "xpu")],
)
def test_parse_nproc_good(value: str, parsed: str) -> None:
    assert parse_nproc(value) == parsed


@pytest.mark.parametrize("value", ["0", "-1", "", "1.5", "AUTO", "two", "4 4", "+2"])
def test_parse_nproc_bad(value: str) -> None:
    with pytest.raises(ConfigError, match="--nproc-per-node: expected a positive integer"):
        parse_nproc(value)


def test_parse_nproc_superscript_digit_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_nproc("²")


def test_parse_nproc_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^cluster\.yaml: "):
        parse_nproc("zero", source="cluster.yaml")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("a", ("a", None)),
        ("a:29500", ("a", 29500)),
        ("node-1.example.com:1", ("node-1.example.com", 1)),
        ("10.0.0.1:65535", ("10.0.0.1", 65535)),
        ("[::1]:29500", ("::1", 29500)),
        ("[fe80::1]", ("fe80::1", None)),
        (" host:80 ", ("host", 80)),
    ],
)
def test_parse_endpoint_good(value: str, parsed: tuple[str, int | None]) -> None:
    assert parse_endpoint(value) == parsed


@pytest.mark.parametrize(
    "value",
    ["", ":29500", "host:", "::1:29500", "[::1]:", "[host!]:1", "a b", "a:b", "a:1:2",
     "[::1]29500", "user@host:1"],
)
def test_parse_endpoint_bad(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^--rdzv-endpoint: expected HOST\[:PORT\]"):
        parse_endpoint(value)


@pytest.mark.parametrize("value", ["a:0", "a:65536", "[::1]:99999"])
def test_parse_endpoint_port_out_of_range(value: str) -> None:
    with pytest.raises(ConfigError, match="out of range 1-65535"):
        parse_endpoint(value)


def test_parse_endpoint_round_trips_through_format() -> None:
    for value in ("a:29500", "[::1]:29500", "10.1.2.3:7"):
        assert format_endpoint(*parse_endpoint(value)) == value


def test_node_plan_ranks_property() -> None:
    node = NodePlan(0, HostSpec("a"), "4", 8, (), "t")
    assert node.ranks == range(8, 12)
    assert NodePlan(0, HostSpec("a"), "auto", 0, (), "t").ranks is None
    assert NodePlan(0, HostSpec("a"), "4", None, (), "t").ranks is None


@pytest.mark.parametrize("name", ["DB_PASS", "MYSQL_PWD"])
def test_redact_hides_short_password_names(name: str) -> None:
    assert redact({name: "hunter2"}) == [(name, REDACTED)]


def test_restart_attempts_get_a_fresh_rendezvous_id() -> None:
    cfg = config(("a", 1), ("b", 1))
    first, second = plan_job(cfg, "job", attempt=0), plan_job(cfg, "job", attempt=1)
    assert flag(torchrun_args(first, first.nodes[0], ("a", 1), None), "--rdzv-id") == "job"
    assert flag(torchrun_args(second, second.nodes[0], ("a", 1), None), "--rdzv-id") == "job.1"
    assert {n.tag for n in first.nodes}.isdisjoint({n.tag for n in second.nodes})
    assert dict(second.nodes[0].env)["SSHRUN_ATTEMPT"] == "1"


# --- the etcd backends and what the ranks see across restarts --------------------------


@pytest.mark.parametrize("backend", ["etcd", "etcd-v2"])
def test_etcd_backends_need_the_users_endpoint(backend: str) -> None:
    with pytest.raises(ConfigError) as caught:
        plan_job(config(("a", 1), rdzv_backend=backend), "job1")
    assert str(caught.value) == (f"--rdzv-backend {backend} needs --rdzv-endpoint HOST[:PORT]: "
                                 "the etcd server's client address (port 2379 when left out)")


@pytest.mark.parametrize("backend", ["etcd", "etcd-v2"])
def test_etcd_backends_pass_the_endpoint_to_every_node(backend: str) -> None:
    plan = two_node_plan(rdzv_backend=backend, rdzv_endpoint="etcd1")
    endpoint = given_endpoint(plan.config)
    assert endpoint == ("etcd1", 2379)  # etcd's port, as torch's etcd backends default to
    for node in plan.nodes:
        assert node.first_rank is None  # the rendezvous decides
        args = torchrun_args(plan, node, endpoint, f"10.0.0.{node.index}")
        assert flag(args, "--rdzv-backend") == backend
        assert flag(args, "--rdzv-endpoint") == "etcd1:2379"
        assert flag(args, "--local-addr") == f"10.0.0.{node.index}"
        assert "--node-rank" not in args


def test_a_given_endpoint_keeps_its_port_or_gets_torchruns() -> None:
    assert given_endpoint(config(("a", 1), rdzv_backend="etcd",
                                 rdzv_endpoint="[::1]:2380")) == ("::1", 2380)
    assert given_endpoint(config(("a", 1), rdzv_backend="c10d",
                                 rdzv_endpoint="h")) == ("h", 29400)
    assert given_endpoint(config(("a", 1))) is None


def test_ranks_see_sshruns_restarts_as_torchruns_own() -> None:
    cfg = config(("a", 1), ("b", 1), restarts=RestartPolicy(max_restarts=3))
    for attempt in (0, 2):
        plan = plan_job(cfg, "job9", attempt=attempt)
        assert rank_env(plan) == {"TORCHELASTIC_RESTART_COUNT": str(attempt),
                                  "TORCHELASTIC_MAX_RESTARTS": "3",
                                  "TORCHELASTIC_RUN_ID": "job9"}
        # torchrun's own rendezvous id changes per attempt; the run id the ranks see does not.
        assert flag(torchrun_args(plan, plan.nodes[0], ("a", 1), None), "--rdzv-id") == (
            "job9.2" if attempt else "job9")
    named = plan_job(config(("a", 1), rdzv_id="exp7"), "job9", attempt=1)
    assert rank_env(named)["TORCHELASTIC_RUN_ID"] == "exp7"


# --- probe_endpoint ----------------------------------------------------------------------


def test_every_node_but_the_stores_host_probes_what_its_torchrun_is_given() -> None:
    p = plan_job(config(("a", 2), ("b", 2), ("c", 2)), "j")
    endpoint = ("10.0.0.1", 29500)
    assert [probe_endpoint(p, n, endpoint) for n in p.nodes] == [None, endpoint, endpoint]
    # --master-port alone: the port torchrun gets is the one probed.
    p = plan_job(config(("a", 2), ("b", 2), rdzv_port=29600), "j")
    assert probe_endpoint(p, p.nodes[1], ("10.0.0.1", 41000)) == ("10.0.0.1", 29600)
    assert torchrun_args(p, p.nodes[1], ("10.0.0.1", 41000), None).count("10.0.0.1:29600") == 1


def test_etcd_is_probed_from_node_0_too_and_exec_or_standalone_never() -> None:
    p = plan_job(config(("a", 1), ("b", 1), rdzv_backend="etcd",
                        rdzv_endpoint="etcd.example:2379"), "j")
    assert probe_endpoint(p, p.nodes[0], ("etcd.example", 2379)) == ("etcd.example", 2379)
    p = plan_job(config(("a", 1), ("b", 1), mode="exec"), "j")
    assert probe_endpoint(p, p.nodes[1], ("a", 29500)) is None
    p = plan_job(config(("a", 1), standalone=True), "j")
    assert probe_endpoint(p, p.nodes[0], ("a", None)) is None
