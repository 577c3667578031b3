"""The agent's rendezvous probe (sshrun/node/rdzv_probe.py) against real loopback sockets,
time passed in: a refusal is waiting, then a failure once it lasts; a listener is reachable,
which is news only after a failure.
The timeout (packets dropped) is in tests/test_stall_netns.py, against a real namespace."""

from __future__ import annotations

import socket
import time

from sshrun.node.rdzv_probe import PROBE_AFTER, PROBE_EVERY, REFUSED_GRACE, Probe


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(probe: Probe, now: float) -> tuple[str, str | None] | None:
    """Poll as the agent's tick does, until an outcome or 5 s (a connect in progress)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        outcome = probe.poll(now)
        if outcome is not None or probe.sock is None:
            return outcome
        time.sleep(0.01)
    raise AssertionError("the connect neither finished nor timed out")


def test_nothing_before_probe_after_then_a_refusal_waits_until_the_grace_ends() -> None:
    probe = Probe("127.0.0.1", _closed_port(), began=1000.0)
    assert probe.poll(1000.0 + PROBE_AFTER - 0.1) is None and probe.sock is None
    assert _until(probe, 1000.0 + PROBE_AFTER) is None  # refused: waiting, as it began
    assert probe.poll(1000.0 + PROBE_AFTER + 0.1) is None  # not due again yet
    late = 1000.0 + REFUSED_GRACE + PROBE_EVERY
    assert _until(probe, late) == ("unreachable", "connection refused")
    assert _until(probe, late + PROBE_EVERY) is None  # the same again is not news
    assert not probe.done


def test_a_listener_is_reachable_and_ends_the_probing() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        probe = Probe("127.0.0.1", int(listener.getsockname()[1]), began=0.0)
        # A slow start-up whose way is open is no news for the head.
        assert _until(probe, PROBE_AFTER) is None
        assert probe.done and probe.sock is None
        assert probe.poll(PROBE_AFTER + 60) is None


def test_the_end_of_a_failure_is_news() -> None:
    port = _closed_port()
    probe = Probe("127.0.0.1", port, began=0.0)
    assert _until(probe, REFUSED_GRACE) == ("unreachable", "connection refused")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert _until(probe, REFUSED_GRACE + PROBE_EVERY) == ("reachable", None)
        assert probe.done

