"""64 ranks flooding a reader that stalls: the head's memory stays bounded and nothing is lost.

8 real OpenSSH sshd nodes on loopback, 8 ranks each (run mode, torchrun), every rank
writing 20,000 numbered lines as fast as it can (115 MB in all: far more than the
head's console backlog, the SSH windows, the agents' queues and the pipes hold), into
``sshrun ... | python workers/stalling_reader.py``, which takes nothing for 8 s after
the first output, then drains and checks every line (tests/flood.py).

What it asserts: nothing lost, back-pressure reaching the ranks, the head's RSS flat
while the reader stalls, and the head's peak (VmHWM) within a bound that does not
grow with the output. Without sshrun.bounded_process that peak grew with it (asyncssh
re-opened a node's whole window for every 64 KiB read): 160 MiB for this job, 469 MiB at
80,000 lines a rank; with it, 87-90 MiB at 20,000, 40,000 and 80,000 (bench/memory.py,
docs/benchmarks.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import MakeSshdCluster
from flood import flood

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

MIB = 1 << 20
# While the reader stalls the head holds ~50 MiB of interpreter and imports, the
# console's 4 MiB backlog and, per node, the SSH channel's window and asyncssh's read
# buffer (2 MiB each) and a chunk in hand: once the backlog is full it takes nothing more.
STALL_GROWTH = 16 * MIB
# The peak: the interpreter with its imports (~50 MiB) and slack, then per node one
# channel window buffered by asyncssh's channel and one by its stream (2 MiB each), the
# chunk in hand and the allocator's slack. 112 MiB for 8 nodes; 88 MiB measured.
HEAD_BASE = 64 * MIB
PER_NODE = 6 * MIB


def test_64_ranks_into_a_stalled_reader_bounded_memory_nothing_lost(
    make_sshd_cluster: MakeSshdCluster, tmp_path: Path
) -> None:
    cluster = make_sshd_cluster(8)
    ranks, lines, stall = 64, 20_000, 8.0
    args = ["-H", str(cluster.hostfile), "--ssh-config", str(cluster.ssh_config),
            "--python", sys.executable, "--nproc-per-node", "8"]
    result = flood(args, ranks, lines, tmp_path, stall, timeout=600)
    assert result.code == 0, result.stderr[-3000:]
    assert result.bad == [], result.bad
    assert result.lines == [lines] * ranks
    assert result.checksum == result.expected
    # Back-pressure reached the ranks: they were blocked on their writes while the
    # reader stalled, not buffered in full by the head.
    assert result.held > 0, "every rank finished writing while the reader stalled"
    during = result.stall_rss
    assert len(during) >= 20, f"only {len(during)} samples of the head's RSS in the stall"
    half = len(during) // 2
    assert max(during[half:]) <= max(during[:half]) + STALL_GROWTH, \
        [r // MIB for r in during[::max(1, len(during) // 20)]]
    bound = HEAD_BASE + 8 * PER_NODE
    samples = [r // MIB for r in result.rss[::max(1, len(result.rss) // 20)]]
    assert result.peak_rss <= bound, (f"head peak RSS {result.peak_rss / MIB:.0f} MiB over "
                                      f"{bound / MIB:.0f} MiB; samples {samples}")
    assert "Traceback" not in result.stderr
