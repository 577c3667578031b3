"""One resolver for both doors: precedence per section, the same through the CLI and the API.

Each case runs twice: as command-line flags through ``parse_invocation`` and
as the API's keywords through ``sshrun.settings.resolve``. Per key: an option
beats the YAML file, the file beats the default (the table in
sshrun/settings.py and docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sshrun.api import _options
from sshrun.cli import parse_invocation
from sshrun.plan import plan_job
from sshrun.settings import Invocation, resolve

Door = Callable[..., Invocation]


def _cli(*target: str, environ: dict[str, str] | None = None, **keywords: object) -> Invocation:
    argv: list[str] = []
    for name, value in keywords.items():
        flag = "--" + name.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            argv += [flag] if item is True else [flag, str(item)]
    return parse_invocation([*argv, *target], environ={} if environ is None else environ)


def _api(*target: str, environ: dict[str, str] | None = None, **keywords: object) -> Invocation:
    from dataclasses import replace

    opts = replace(_options("run", keywords), target=target)
    return resolve(opts, {} if environ is None else environ)


@pytest.fixture(params=[_cli, _api], ids=["cli", "api"])
def door(request: pytest.FixtureRequest) -> Door:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def yaml_file(tmp_path: Path) -> Callable[[str], str]:
    def write(text: str) -> str:
        path = tmp_path / "cluster.yaml"
        path.write_text(text)
        return str(path)
    return write


def _node(inv: Invocation, index: int = 0):  # type: ignore[no-untyped-def]
    return plan_job(inv.config, inv.job_id).nodes[index]


def test_hosts_section(door: Door, yaml_file: Callable[[str], str]) -> None:
    config = yaml_file("hosts: [a, b]\ndefaults: {python: /opt/file/python, workdir: /file}\n")
    assert (_node(door("t.py", hosts="a")).python, _node(door("t.py", hosts="a")).workdir) \
        == ("python3", str(Path.cwd()))  # the defaults
    from_file = door("t.py", config=config)
    assert [h.label for h in from_file.config.hosts] == ["a", "b"]
    assert (_node(from_file).python, _node(from_file).workdir) == ("/opt/file/python", "/file")
    flags = door("t.py", config=config, python="/opt/flag/python", workdir="/flag",
                 exclude="a")
    assert [h.label for h in flags.config.hosts] == ["b"]
    assert (_node(flags).python, _node(flags).workdir) == ("/opt/flag/python", "/flag")


def test_hosts_from_the_slurm_environment_only_without_an_option(door: Door) -> None:
    slurm = {"SLURM_JOB_NODELIST": "gpu[1-2]", "SLURM_NTASKS_PER_NODE": "2"}
    inv = door("t.py", environ=slurm)
    assert [(h.label, h.slots) for h in inv.config.hosts] == [("gpu1", 2), ("gpu2", 2)]
    assert [h.label for h in door("t.py", environ=slurm, hosts="x").config.hosts] == ["x"]


def test_ssh_section(door: Door, yaml_file: Callable[[str], str], tmp_path: Path) -> None:
    (tmp_path / "file_config").write_text("")
    (tmp_path / "flag_config").write_text("")
    default = door("t.py", hosts="a").ssh
    assert (default.host_key_policy, default.timeouts.connect, default.config_paths) == (
        "strict", 15.0, None)
    config = yaml_file(f"hosts: [a]\nssh: {{config: {tmp_path / 'file_config'}, "
                       "host_key_policy: accept-new, connect_timeout: 7}\n")
    file = door("t.py", config=config).ssh
    assert (file.host_key_policy, file.timeouts.connect, file.config_paths) == (
        "accept-new", 7.0, (str(tmp_path / "file_config"),))
    flag = door("t.py", config=config, host_key_policy="strict", connect_timeout=5,
                ssh_config=str(tmp_path / "flag_config")).ssh
    assert (flag.host_key_policy, flag.timeouts.connect, flag.config_paths) == (
        "strict", 5.0, (str(tmp_path / "flag_config"),))


def test_env_section(door: Door, yaml_file: Callable[[str], str]) -> None:
    def value(inv: Invocation, name: str) -> str | None:
        return dict(_node(inv).env).get(name)

    assert value(door("t.py", hosts="a"), "FOO") is None
    config = yaml_file("hosts: [a]\nenv: {set: {FOO: file}, secret: [TOKEN_A]}\n")
    environ = {"TOKEN_A": "secret-a-value", "TOKEN_B": "secret-b-value"}
    file = door("t.py", config=config, environ=environ)
    assert value(file, "FOO") == "file"
    flag = door("t.py", config=config, env=["FOO=flag"], secret=["TOKEN_B"], environ=environ)
    assert value(flag, "FOO") == "flag"
    assert {"TOKEN_A", "TOKEN_B"} <= flag.config.secrets  # secrets add up
    assert flag.secret_values >= {"secret-a-value", "secret-b-value"}


def test_torchrun_section(door: Door, yaml_file: Callable[[str], str]) -> None:
    default = door("t.py", hosts="a:4")
    assert (_node(default).nproc, default.config.restarts.max_restarts,
            default.config.rdzv_backend, len(default.config.hosts)) == ("4", 0, "static", 1)
    config = yaml_file("hosts: [a, b, c]\ntorchrun: {nproc_per_node: 2, max_restarts: 2, "
                       "rdzv_backend: c10d, nnodes: 2}\n")
    file = door("t.py", config=config)
    assert (_node(file).nproc, file.config.restarts.max_restarts, file.config.rdzv_backend,
            len(file.config.hosts)) == ("2", 2, "c10d", 2)
    flag = door("t.py", config=config, nproc_per_node=3, max_restarts=1,
                rdzv_backend="static", nnodes=1)
    assert (_node(flag).nproc, flag.config.restarts.max_restarts, flag.config.rdzv_backend,
            len(flag.config.hosts)) == ("3", 1, "static", 1)


def test_job_settings_have_no_yaml_key_and_a_flag_beats_the_default(door: Door) -> None:
    default = door("t.py", hosts="a,b", nnodes="1:2")
    t, r = default.config.timeouts, default.config.restarts
    assert (t.grace, t.heartbeat_timeout, r.backoff, r.backoff_max) == (10.0, 15.0, 1.0, 60.0)
    assert default.config.membership is not None and default.config.membership.cooldown == 60
    flag = door("t.py", hosts="a,b", nnodes="1:2", grace_period=3, heartbeat_timeout=6,
                restart_backoff=0.5, restart_backoff_max=4, host_cooldown=9,
                no_restart_on="3,4")
    t, r = flag.config.timeouts, flag.config.restarts
    assert (t.grace, t.heartbeat_timeout, r.backoff, r.backoff_max, r.no_restart_on) == (
        3.0, 6.0, 0.5, 4.0, frozenset({3, 4}))
    assert flag.config.membership is not None and flag.config.membership.cooldown == 9


def test_both_doors_refuse_alike(door: Door) -> None:
    from sshrun.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^--max-restarts: expected "):
        door("t.py", hosts="a", max_restarts="-1")
    with pytest.raises(ConfigError, match=r"^--rdzv-id: "):
        door("t.py", hosts="a", rdzv_id="a b")


# -- torchrun's options: flag > YAML file > PET_* > default --------------------------------


def _run_line(inv: Invocation) -> str:
    from sshrun.dry_run import render_dry_run

    text = render_dry_run(plan_job(inv.config, inv.job_id), inv)
    return next(line for line in text.splitlines() if line.startswith("  run:"))


def test_torchrun_options_flag_beats_file_beats_pet_variable(
        door: Door, yaml_file: Callable[[str], str]) -> None:
    assert "--role" not in _run_line(door("t.py", hosts="a"))
    pet = {"PET_ROLE": "from-env", "PET_MONITOR_INTERVAL": "0.3", "PET_NPROC_PER_NODE": "5"}
    env = door("t.py", hosts="a", environ=pet)
    assert (" --role from-env" in _run_line(env), _node(env).nproc) == (True, "5")
    assert " --monitor-interval 0.3 " in _run_line(env)
    config = yaml_file("hosts: [a]\ntorchrun: {role: from-file, monitor_interval: 0.4, "
                       "nproc_per_node: 6}\n")
    file = door("t.py", config=config, environ=pet)
    assert (" --role from-file" in _run_line(file), _node(file).nproc) == (True, "6")
    assert " --monitor-interval 0.4 " in _run_line(file)
    flag = door("t.py", config=config, environ=pet, role="from-flag", monitor_interval=0.5,
                nproc_per_node=7)
    assert (" --role from-flag" in _run_line(flag), _node(flag).nproc) == (True, "7")
    assert " --monitor-interval 0.5 " in _run_line(flag)


def test_torchrun_switches_a_file_false_beats_a_pet_one(
        door: Door, yaml_file: Callable[[str], str]) -> None:
    pet = {"PET_VIRTUAL_LOCAL_RANK": "1"}
    assert " --virtual-local-rank" in _run_line(door("t.py", hosts="a", environ=pet))
    config = yaml_file("hosts: [a]\ntorchrun: {virtual_local_rank: false}\n")
    assert " --virtual-local-rank" not in _run_line(door("t.py", config=config, environ=pet))
    flag = door("t.py", config=config, environ=pet, virtual_local_rank=True)
    assert " --virtual-local-rank" in _run_line(flag)


def test_log_dir_flag_beats_file_beats_pet_variable(
        door: Door, yaml_file: Callable[[str], str], tmp_path: Path) -> None:
    assert door("t.py", hosts="a").log_dir is None
    pet = {"PET_LOG_DIR": "/from/env"}
    assert door("t.py", hosts="a", environ=pet).log_dir == "/from/env"
    config = yaml_file("hosts: [a]\nlog_dir: logs\n")  # relative to the file's directory
    assert door("t.py", config=config, environ=pet).log_dir == str(tmp_path / "logs")
    assert door("t.py", config=config, environ=pet, log_dir="/from/flag").log_dir == "/from/flag"


def test_shutdown_timeout_is_the_grace_period(door: Door,
                                              yaml_file: Callable[[str], str]) -> None:
    config = yaml_file("hosts: [a]\ntorchrun: {shutdown_timeout: 4}\n")
    assert door("t.py", config=config).config.timeouts.grace == 4.0
    assert door("t.py", config=config, environ={"PET_SHUTDOWN_TIMEOUT": "6"}
                ).config.timeouts.grace == 4.0
    assert door("t.py", hosts="a", environ={"PET_SHUTDOWN_TIMEOUT": "6"}
                ).config.timeouts.grace == 6.0
    assert door("t.py", hosts="a", shutdown_timeout=2, grace_period=2).config.timeouts.grace == 2
