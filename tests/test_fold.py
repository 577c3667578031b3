"""Folding identical lines across ranks (sshrun/fold.py): what the console shows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sshrun.fold import Folded, LineFolder


def test_first_copy_at_once_the_rest_after_the_window() -> None:
    folder = LineFolder(window=1.0)
    assert folder.offer("node1", 0, "warning: deprecated", now=10.0) is True
    shown = [folder.offer(f"node{1 + r // 8}", r, "warning: deprecated", now=10.2)
             for r in range(1, 512)]
    assert not any(shown)
    assert folder.due(now=10.9) == []
    assert folder.next_due() == 11.0
    (folded,) = folder.due(now=11.0)
    assert folded.label() == "node[1-64] r[1-511]"
    assert folded.summary() == "(same line, 511 more ranks)"
    assert folder.due(now=12.0) == [] and folder.next_due() is None


def test_a_ranks_own_repeat_is_shown_and_other_lines_pass() -> None:
    folder = LineFolder(window=1.0)
    assert folder.offer("a", 0, "loss 1.0", now=0.0)
    assert folder.offer("a", 0, "loss 1.0", now=0.1)  # the same rank again
    assert folder.offer("a", 1, "loss 2.0", now=0.1)  # another line
    assert not folder.offer("b", 2, "loss 1.0", now=0.2)
    assert folder.offer("b", 2, "", now=0.2) and folder.offer("c", 3, "", now=0.2)
    assert folder.close() == [Folded("loss 1.0", "out", ("b",), (2,))]
    assert Folded("x", "out", ("b",), (2,)).summary() == "(same line, 1 more rank)"


def test_streams_fold_apart_and_late_copies_start_again() -> None:
    folder = LineFolder(window=1.0)
    assert folder.offer("a", 0, "x", now=0.0, stream="out")
    assert folder.offer("a", 1, "x", now=0.0, stream="err")
    assert not folder.offer("a", 2, "x", now=0.5, stream="out")
    # After the window a copy is shown again (a new window), and the old fold is told.
    assert folder.offer("a", 3, "x", now=1.5, stream="out")
    assert folder.due(now=1.5) == [Folded("x", "out", ("a",), (2,))]


def test_open_windows_are_bounded() -> None:
    folder = LineFolder(window=100.0, max_open=3)
    for n in range(4):
        assert folder.offer("a", 0, f"line {n}", now=0.0)
    assert not folder.offer("b", 1, "line 3", now=0.0)
    # "line 0" was closed early to keep three open; a copy of it is shown again.
    assert folder.offer("b", 1, "line 0", now=0.0)
    assert [f.text for f in folder.close()] == ["line 3"]


@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["a", "b", "c", ""]),
                          st.floats(0, 0.5)), max_size=60))
def test_every_line_is_shown_or_counted_once(lines: list[tuple[int, str, float]]) -> None:
    folder = LineFolder(window=0.2)
    now, shown, folds = 0.0, 0, []
    for rank, text, step in lines:
        now += step
        folds += folder.due(now)
        shown += folder.offer(f"n{rank}", rank, text, now)
    folds += folder.close()
    assert shown + sum(len(f.ranks) for f in folds) == len(lines)
