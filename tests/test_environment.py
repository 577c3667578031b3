"""Tests for sshrun.environment: forwarding, precedence, secrets (sshrun.redact's names)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sshrun.environment import (
    DEFAULT_FORWARD,
    NEVER_FORWARD,
    EnvPlan,
    resolve_env,
)
from sshrun.errors import ConfigError
from sshrun.redact import REDACTED, Redactor, is_secret_name, redact_env

SRC = "job.env"
FAST = settings(max_examples=300, deadline=None)

HEAD = {
    "NCCL_DEBUG": "INFO",
    "NCCL_IB_DISABLE": "1",
    "XNCCL_A": "no",
    "NCCL": "no",
    "nccl_lower": "no",
    "TORCH_DISTRIBUTED_DEBUG": "DETAIL",
    "OMP_NUM_THREADS": "8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONPATH": "/head/only",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "PATH": "/usr/bin",
    "HOME": "/root",
    "PWD": "/root/x",
    "SHLVL": "2",
    "_": "/usr/bin/sshrun",
    "SSH_AUTH_SOCK": "/tmp/agent",
    "SSH_CONNECTION": "1 2 3 4",
    "SSHRUN_JOB_ID": "outer",
    "HF_TOKEN": "hf_secret_value",
    "WANDB_API_KEY": "wandb-secret-123",
    "OTHER": "x",
}


def names(plan: EnvPlan) -> list[str]:
    return [k for k, _ in plan.values]


def secret_values(plan: EnvPlan) -> frozenset[str]:
    """The non-empty values of the plan's secret names: what the console redacts."""
    return frozenset(v for k, v in plan.values if k in plan.secrets and v)


def redact_text(text: str, values: Iterable[str]) -> str:
    return Redactor(values).redact(text)


# --- default forwarding ----------------------------------------------------------------


def test_default_forwarding_takes_exactly_the_matching_head_vars() -> None:
    plan = resolve_env(HEAD)
    assert dict(plan.values) == {
        "NCCL_DEBUG": "INFO",
        "NCCL_IB_DISABLE": "1",
        "OMP_NUM_THREADS": "8",
        "PYTHONUNBUFFERED": "1",
        "TORCH_DISTRIBUTED_DEBUG": "DETAIL",
    }
    assert names(plan) == sorted(names(plan))


def test_default_lists_are_disjoint_and_keep_gpu_selection_and_paths_out() -> None:
    for pattern in DEFAULT_FORWARD:
        for never in ("CUDA_VISIBLE_DEVICES", "PATH", "PYTHONPATH", "HOME", "HF_TOKEN"):
            assert not fnmatch.fnmatchcase(never, pattern), (never, pattern)
    for name in ("SSH_AUTH_SOCK", "PWD", "SHLVL", "_", "PATH", "CUDA_VISIBLE_DEVICES",
                 "SSHRUN_JOB_ID", "XDG_RUNTIME_DIR", "BASH_FUNC_f%%", "TORCHELASTIC_RUN_ID"):
        assert any(fnmatch.fnmatchcase(name, p) for p in NEVER_FORWARD), name


env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
prefixed = st.sampled_from(["NCCL_", "TORCH_", "SSH_", "XDG_", "SSHRUN_", "GLOO_", ""]).flatmap(
    lambda p: env_names.map(lambda n: p + n)
)
head_envs = st.dictionaries(
    st.one_of(prefixed, st.sampled_from(sorted(HEAD)), st.sampled_from(NEVER_FORWARD)),
    st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=8),
    max_size=30,
)


@FAST
@given(head_envs)
def test_default_forwarding_never_takes_never_forward_names(head: dict[str, str]) -> None:
    plan = resolve_env(head)
    expected = {
        k: v for k, v in head.items()
        if any(fnmatch.fnmatchcase(k, p) for p in DEFAULT_FORWARD)
        and not any(fnmatch.fnmatchcase(k, p) for p in NEVER_FORWARD)
    }
    assert dict(plan.values) == expected
    assert len(plan.values) == len(dict(plan.values))


@FAST
@given(head_envs, st.sampled_from(["NCCL_*", "SSH_*", "*", "T?RCH_*", "[NS]*", "[!N]*_*"]))
def test_glob_flag_forwards_exactly_the_matching_names(head: dict[str, str], glob: str) -> None:
    plan = resolve_env(head, forward=(), flags=[glob])
    expected = {
        k: v for k, v in head.items()
        if fnmatch.fnmatchcase(k, glob)
        and not any(fnmatch.fnmatchcase(k, p) for p in NEVER_FORWARD)
    }
    assert dict(plan.values) == expected


def test_glob_flag_nccl() -> None:
    plan = resolve_env(HEAD, forward=(), flags=["NCCL_*"])
    assert plan.values == (("NCCL_DEBUG", "INFO"), ("NCCL_IB_DISABLE", "1"))


def test_glob_never_forwards_session_variables_but_exact_names_do() -> None:
    plan = resolve_env(HEAD, forward=(), flags=["*"])
    got = dict(plan.values)
    for name in ("PATH", "HOME", "PWD", "SHLVL", "_", "SSH_AUTH_SOCK", "SSHRUN_JOB_ID",
                 "CUDA_VISIBLE_DEVICES"):
        assert name not in got
    assert got["OTHER"] == "x" and got["XNCCL_A"] == "no" and got["nccl_lower"] == "no"
    exact = resolve_env(HEAD, forward=(), flags=["PATH", "CUDA_VISIBLE_DEVICES"])
    assert exact.values == (("PATH", "/usr/bin"), ("CUDA_VISIBLE_DEVICES", "0,1"))


def test_forward_accepts_names_and_patterns_and_skips_unset() -> None:
    plan = resolve_env(HEAD, forward=["OTHER", "MISSING", "SSH_*", "GLOO_*", "PATH"])
    assert plan.values == (("OTHER", "x"), ("PATH", "/usr/bin"))


@pytest.mark.parametrize("bad", ["", "A-B", "A B", "$A", "A.B", "1A"])
def test_forward_bad_entry_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"env\.forward"):
        resolve_env(HEAD, forward=[bad])


def test_head_names_that_are_not_names_are_never_globbed() -> None:
    plan = resolve_env({"NCCL_X%%": "f", "NCCL_OK": "1"}, forward=("NCCL_*",))
    assert plan.values == (("NCCL_OK", "1"),)


# --- -x flags, as plan.resolve_env_flags did ---------------------------------------------


def test_flags_set_and_forward() -> None:
    plan = resolve_env(HEAD, forward=(), flags=["A=1", "B=x=y", "C=", "OMP_NUM_THREADS"])
    assert plan.values == (("A", "1"), ("B", "x=y"), ("C", ""), ("OMP_NUM_THREADS", "8"))


def test_flag_forwards_empty_value() -> None:
    assert resolve_env({"EMPTY": ""}, flags=["EMPTY"]).values == (("EMPTY", ""),)


def test_later_flag_wins() -> None:
    head = {"A": "head"}
    assert resolve_env(head, flags=["A", "A=set"]).values == (("A", "set"),)
    assert resolve_env(head, flags=["A=set", "A"]).values == (("A", "head"),)


def test_unset_flag_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="-x/--env: MISSING is not set on the head; use -x"):
        resolve_env({"OTHER": "1"}, flags=["MISSING"])


def test_pattern_with_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="a pattern cannot take a value"):
        resolve_env({}, flags=["NCCL_*=1"])


@pytest.mark.parametrize("bad", ["", "=value", "A-B=1", "A B", "$A", "A.B=1", "1FOO=bar", "A*.B"])
def test_bad_flag_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="-x/--env"):
        resolve_env({"A": "1"}, flags=[bad])


def test_nul_in_a_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NUL"):
        resolve_env({}, set_values=[("A", "x\0y")])


# --- precedence ------------------------------------------------------------------------


def test_precedence_forwarded_file_set_flags() -> None:
    head = {"NCCL_DEBUG": "head", "NCCL_ALGO": "head", "NCCL_PROTO": "head", "NCCL_X": "head"}
    plan = resolve_env(
        head,
        files=[("NCCL_ALGO", "file"), ("NCCL_PROTO", "file"), ("NCCL_X", "file"), ("F", "f")],
        set_values=[("NCCL_PROTO", "set"), ("NCCL_X", "set")],
        flags=["NCCL_X=flag"],
    )
    assert dict(plan.values) == {
        "NCCL_DEBUG": "head",
        "NCCL_ALGO": "file",
        "NCCL_PROTO": "set",
        "NCCL_X": "flag",
        "F": "f",
    }
    # each name once, at its first position
    assert names(plan) == ["NCCL_ALGO", "NCCL_DEBUG", "NCCL_PROTO", "NCCL_X", "F"]


def test_a_forwarding_flag_beats_a_set_value() -> None:
    plan = resolve_env({"A": "head"}, set_values=[("A", "set")], flags=["A"])
    assert plan.values == (("A", "head"),)


def test_a_glob_flag_beats_a_file_value() -> None:
    plan = resolve_env({"GLOO_X": "head"}, forward=(), files=[("GLOO_X", "file")],
                       flags=["GLOO_*"])
    assert plan.values == (("GLOO_X", "head"),)


@FAST
@given(
    st.lists(st.tuples(st.sampled_from("ABC"), st.text(max_size=3)), max_size=4),
    st.lists(st.tuples(st.sampled_from("ABC"), st.text(max_size=3)), max_size=4),
    st.lists(st.sampled_from(["A=x", "B=y", "C", "A"]), max_size=4),
)
def test_precedence_property(
    files: list[tuple[str, str]], sets: list[tuple[str, str]], flags: list[str]
) -> None:
    files = [(k, v.replace("\0", "")) for k, v in files]
    sets = [(k, v.replace("\0", "")) for k, v in sets]
    head = {"A": "hA", "B": "hB", "C": "hC"}
    expected: dict[str, str] = {"A": "hA", "B": "hB", "C": "hC"}  # forwarded by forward=["*"]
    expected.update(files)
    expected.update(sets)
    for flag in flags:
        name, sep, value = flag.partition("=")
        expected[name] = value if sep else head[name]
    plan = resolve_env(head, forward=["*"], files=files, set_values=sets, flags=flags)
    assert dict(plan.values) == expected


# --- secrets -------------------------------------------------------------------------------


def test_secret_is_forwarded_from_the_head_when_named() -> None:
    plan = resolve_env(HEAD, forward=(), secrets=["WANDB_API_KEY"])
    assert plan.values == (("WANDB_API_KEY", "wandb-secret-123"),)
    assert plan.secrets == frozenset({"WANDB_API_KEY"})
    assert secret_values(plan) == frozenset({"wandb-secret-123"})


def test_secret_given_a_value_uses_it() -> None:
    plan = resolve_env(HEAD, forward=(), files=[("WANDB_API_KEY", "from-file")],
                       secrets=["WANDB_API_KEY"])
    assert plan.values == (("WANDB_API_KEY", "from-file"),)


def test_secret_unset_everywhere_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--secret MY_S: not set on the head nor given a value"):
        resolve_env(HEAD, secrets=["MY_S"])


def test_secret_bad_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--secret"):
        resolve_env(HEAD, secrets=["NCCL_*"])


def test_secret_looking_names_are_secret_too() -> None:
    plan = resolve_env(HEAD, forward=(), flags=["HF_TOKEN", "DB=plain"], secrets=["DB"])
    assert plan.secrets == frozenset({"HF_TOKEN", "DB"})
    assert secret_values(plan) == frozenset({"hf_secret_value", "plain"})


def test_secret_values_skip_empty_values() -> None:
    plan = resolve_env({}, flags=["S="], secrets=["S"])
    assert secret_values(plan) == frozenset()


def test_is_secret_name() -> None:
    assert is_secret_name("MY_VAR", ["MY_VAR"])
    assert is_secret_name("HF_TOKEN", ())
    assert is_secret_name("AWS_SECRET_ACCESS_KEY", ())
    assert not is_secret_name("OMP_NUM_THREADS", ())
    assert not is_secret_name("PWD", ())


def test_redact_env_hides_values_keeps_order() -> None:
    env = [("A", "1"), ("HF_TOKEN", "t"), ("MINE", "m"), ("B", "2")]
    assert redact_env(env, {"MINE"}) == [
        ("A", "1"), ("HF_TOKEN", REDACTED), ("MINE", REDACTED), ("B", "2")
    ]
    assert redact_env(dict(env), ()) == [("A", "1"), ("HF_TOKEN", REDACTED), ("MINE", "m"),
                                         ("B", "2")]


def test_redact_text_hides_values() -> None:
    text = "key=wandb-secret-123 and again wandb-secret-123; rank 1 ok"
    out = redact_text(text, {"wandb-secret-123", "1"})
    assert out == f"key={REDACTED} and again {REDACTED}; rank 1 ok"


def test_redact_text_longest_first() -> None:
    assert redact_text("abcdefgh abcd", ["abcd", "abcdefgh"]) == f"{REDACTED} {REDACTED}"


def test_redact_text_without_values_is_identity() -> None:
    assert redact_text("abc", ()) == "abc"
    assert redact_text("", ["abcd"]) == ""


@FAST
@given(
    st.lists(st.text("0123456789", min_size=4, max_size=12), min_size=1, max_size=4),
    st.text(st.characters(codec="utf-8", exclude_categories=["Nd"]), max_size=20),
)
def test_redact_text_never_leaves_a_secret(secrets: list[str], filler: str) -> None:
    text = filler + secrets[0] + filler + "".join(secrets) + filler + secrets[-1]
    out = redact_text(text, secrets)
    # secrets are digits, the filler and the marker hold none: nothing can rebuild one
    for value in secrets:
        assert value not in out
    assert REDACTED in out


def test_redact_text_with_plan_secret_values() -> None:
    plan = resolve_env(HEAD, forward=(), secrets=["WANDB_API_KEY"], flags=["HF_TOKEN"])
    log = "wandb-secret-123 hf_secret_value"
    assert redact_text(log, secret_values(plan)) == f"{REDACTED} {REDACTED}"
    assert dict(redact_env(plan.values, plan.secrets)) == {
        "WANDB_API_KEY": REDACTED, "HF_TOKEN": REDACTED,
    }


@pytest.mark.parametrize("name", ["PWD", "SHLVL", "_", "SSH_AUTH_SOCK", "BASHOPTS", "EUID"])
def test_session_variables_are_refused_even_by_name(name: str) -> None:
    message = f"{name} is a login-session variable; sshrun never forwards or sets it"
    for kwargs in ({"flags": [name]}, {"flags": [f"{name}=x"]}, {"forward": [name]},
                   {"set_values": [(name, "x")]}, {"files": [(name, "x")]}):
        with pytest.raises(ConfigError, match=re.escape(message)):
            resolve_env({name: "v"}, **kwargs)  # type: ignore[arg-type]


_GLOBBY = st.text(alphabet="AB_*?[]!-", max_size=6)


@given(st.lists(_GLOBBY, max_size=6), st.text(alphabet="AB_-[]!*?", max_size=6))
def test_the_pattern_test_is_fnmatchcase(patterns: list[str], name: str) -> None:
    # Names, PREFIX* and the rest take three paths: together they are fnmatchcase.
    from sshrun.environment import _any_of

    assert _any_of(tuple(patterns))(name) == any(fnmatch.fnmatchcase(name, p)
                                                for p in patterns)


def test_the_pattern_paths_are_each_taken() -> None:
    from sshrun.environment import _any_of

    test = _any_of(("HOME", "NCCL_*", "*_TOKEN", "X?"))
    assert test("HOME") and not test("HOMES")
    assert test("NCCL_DEBUG") and test("NCCL_") and not test("NCC")
    assert test("HF_TOKEN") and test("XY") and not test("XYZ")
    assert _any_of(("*",))("anything") and not _any_of(())("HOME")
