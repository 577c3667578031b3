"""A hostile node, against real sshd: nothing it prints may drive the head's terminal.

The nodes' authorized_keys line forces a command (tests/sshd_cluster.py
``key_options``) that plays a chatty login shell: before it runs sshrun's own
command (``exec sh -c "$SSH_ORIGINAL_COMMAND"``) it prints escapes (an OSC 52
clipboard write, clear screen, a title, cursor moves), bidi overrides, a line
of 2 MB and invalid UTF-8 on stdout and on stderr. The job's commands, a
traceback and a failing interpreter print the same. The assertions are on the
bytes sshrun writes: no escape but colour (SGR), no raw control, no bidi
control; the job's result and exit status intact; the junk's text visible,
sanitized.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd_cluster import SshdCluster, cluster_args

pytestmark = pytest.mark.sshd

HUGE = 2_000_000
SGR = re.compile(r"\x1b\[[0-9;:]*m")
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# junk.py WHERE [CODE]: what a hostile program prints on both streams.
JUNK = r'''
import os, sys
where = sys.argv[1].encode()
nasty = (b"\x1b]52;c;cHduZWQ=\x07"             # OSC 52: write the clipboard
         b"\x1b[2J\x1b[H\x1bc"                  # clear screen, home, reset
         b"\x1b]0;TITLE-" + where + b"\x07"     # window title
         b"\x1b[5A\x1b[10C\x1b7\x1b8"           # cursor moves, save/restore
         b"\x1bP+q544e\x1b\\"                   # DCS query
         b"\xe2\x80\xae\xe2\x81\xa6"            # U+202E, U+2066 (bidi overrides)
         b"\xc2\x9b2J"                          # U+009B, an 8-bit CSI
         b"\xff\xfe\xc3"                        # invalid UTF-8
         b"\x07\x08\x7f\x00")
for stream in (sys.stdout.buffer, sys.stderr.buffer):
    stream.write(nasty + where + b"-VISIBLE-TEXT \x1b[31mRED\x1b[0m\n")
    stream.write(b"x" * HUGE + b"\n")
    stream.write(b"\xe2\x80\xae" + where + b"-AFTER-BIG\xff\n")
    stream.flush()
if len(sys.argv) > 2:
    print("RESULT node", os.environ.get("SSHRUN_NODE_RANK"), flush=True)
    sys.exit(int(sys.argv[2]) if os.environ.get("SSHRUN_NODE_RANK") == "1" else 0)
'''.replace("HUGE", str(HUGE))

RAISE = r'''
import runpy, sys
sys.argv = ["junk.py", "rank"]
runpy.run_path(JUNK_PATH)
raise RuntimeError("\x1b]0;tb-title\x07\x1b[2Jboom\u202e-in-traceback\x1b[3A")
'''


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    (base / "junk.py").write_text(JUNK)
    (base / "raise.py").write_text(RAISE.replace("JUNK_PATH", repr(str(base / "junk.py"))))
    login = base / "noisy-login"
    login.write_text(f'#!/bin/sh\n{sys.executable} {base / "junk.py"} login\n'
                     'exec sh -c "$SSH_ORIGINAL_COMMAND"\n')
    # An "interpreter" that fails before the agent starts, loudly.
    fake = base / "fakepy"
    fake.write_text(f'#!/bin/sh\n{sys.executable} {base / "junk.py"} fakepy\n'
                    "printf 'fakepy: \\033]52;c;eA==\\007\\033[2Jbroken\\342\\200\\256 "
                    "interpreter\\n' >&2\nexit 1\n")
    for path in (login, fake):
        path.chmod(0o755)
    return base


@pytest.fixture(scope="module")
def cluster(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdCluster]:
    with SshdCluster(2, tmp_path_factory.mktemp("hostile-sshd"),
                     key_options=f'command="{tools / "noisy-login"}"') as nodes:
        yield nodes


def sshrun(*argv: str, timeout: float = 120) -> tuple[int, bytes, bytes]:
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    done = subprocess.run([sys.executable, "-m", "sshrun", *argv], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def assert_clean(data: bytes) -> str:
    """What sshrun wrote is UTF-8 with no escape but SGR, no raw control, no bidi.

    Returns the text without its colours.
    """
    text = data.decode("utf-8")  # strict: invalid input became U+FFFD
    rest = SGR.sub("", text)
    assert "\x1b" not in rest, _near(rest, "\x1b")
    bad = [c for c in rest if (ord(c) < 0x20 and c not in "\t\n") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, bad[:10]
    assert not BIDI & set(text)
    return rest


def _near(text: str, needle: str) -> str:
    at = text.index(needle)
    return repr(text[max(0, at - 80):at + 80])


def assert_login_notices(err: str, hosts: list[str]) -> None:
    for host in hosts:
        for stream in ("stdout", "stderr"):
            assert (f"sshrun: {host}: its login shell printed this on {stream} before "
                    "sshrun's agent started:") in err, err[:3000]
    assert "login-VISIBLE-TEXT RED" in err
    assert "bytes in all; not all shown)" in err


def test_hostile_login_and_command_exec_job_succeeds(cluster: SshdCluster, tools: Path) -> None:
    code, out, err = sshrun("exec", *cluster_args(cluster), "--color", "always", "--",
                            sys.executable, str(tools / "junk.py"), "rank", "0")
    text, errors = assert_clean(out), assert_clean(err)
    assert code == 0, errors[-3000:]
    assert "RESULT node 0" in text and "RESULT node 1" in text
    assert "\x1b[31mRED\x1b[0m" in out.decode()  # the rank's colour is kept
    for stream in (text, errors):
        assert stream.count("rank-VISIBLE-TEXT RED") == 2
        assert stream.count("rank-AFTER-BIG\ufffd") == 2
        assert stream.count("x") >= 2 * HUGE
    assert_login_notices(errors, ["node0", "node1"])
    assert "job finished on 2 nodes" in errors


def test_hostile_exec_failure_keeps_its_exit_status_and_clean_tail(
    cluster: SshdCluster, tools: Path
) -> None:
    code, out, err = sshrun("exec", *cluster_args(cluster), "--",
                            sys.executable, str(tools / "junk.py"), "rank", "5")
    assert_clean(out)
    errors = assert_clean(err)
    assert code == 5, errors[-3000:]
    report = errors[errors.index("sshrun: first failure:"):]
    assert "node1 (node 1): exited with code 5" in report
    assert "rank-AFTER-BIG\ufffd" in report  # the tail, sanitized
    assert "sshrun: exit status 5" in report


@pytest.mark.slow
def test_hostile_traceback_in_the_report(cluster: SshdCluster, tools: Path) -> None:
    code, out, err = sshrun("--hosts", "node0", "--ssh-config", str(cluster.ssh_config),
                            str(tools / "raise.py"))
    assert_clean(out)
    errors = assert_clean(err)
    assert code == 1, errors[-3000:]
    report = errors[errors.index("sshrun: first failure:"):]
    assert "traceback:" in report
    assert "RuntimeError: boom-in-traceback" in report
    assert_login_notices(errors, ["node0"])


def test_hostile_start_up_failure_is_one_clean_error(cluster: SshdCluster, tools: Path) -> None:
    code, out, err = sshrun(*cluster_args(cluster), "--python", str(tools / "fakepy"), "t.py")
    assert out == b""
    errors = assert_clean(err)
    assert code == 255, errors[-3000:]
    assert errors.splitlines()[-1].startswith("sshrun: error: node0: agent exited before "
                                              "saying hello (status 1): fakepy: broken "
                                              "interpreter"), errors[-2000:]
    assert "login-VISIBLE-TEXT RED" in errors
